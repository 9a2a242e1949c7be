module example.invalid/deepflow-rs/bindings/go

go 1.19
