//! CPU profiler: `bpf/profiler.bpf.c` samples every CPU with a software cpu-clock perf event
//! (99 Hz by default) and counts (pid, tid, comm, user stack, kernel stack); optionally the
//! off-CPU part adds the time tasks spend blocked (sched_switch) per stack. [`Profile`] holds
//! the symbolized result; it writes folded stacks (`comm;root;...;leaf count`) and a
//! flamegraph SVG (inferno).
//!
//! User stacks are walked by the kernel through frame pointers: code built without them
//! (`-fomit-frame-pointer`, the default of most distributions' C libraries) yields short or
//! broken user stacks; the leaf frame is always right.
use std::collections::HashMap;
use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, StackTraceMap};
use aya::programs::perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent};
use aya::programs::{PerfEvent, TracePoint};
use aya::{Ebpf, EbpfLoader};

use super::shared::{DfProfileStats, DfStackKey, comm_str};
use super::symbols::Symbolizer;
use super::{Error, Result, attach_err, load_err, object};

/// Settings of the profiler.
#[derive(Debug, Clone)]
pub struct ProfilerConfig {
    /// Only this process (tgid); `None` profiles everything but the idle task.
    pub pid: Option<u32>,
    /// Samples per second per CPU.
    pub frequency: u64,
    /// Also record off-CPU time (sched_switch).
    pub off_cpu: bool,
}

impl Default for ProfilerConfig {
    fn default() -> Self {
        ProfilerConfig { pid: None, frequency: 99, off_cpu: false }
    }
}

/// One symbolized stack and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Process kernel name.
    pub comm: String,
    /// Frames from the root (outermost) to the leaf; kernel frames end in `_[k]`.
    pub frames: Vec<String>,
    /// Samples (on-CPU) or nanoseconds blocked (off-CPU).
    pub value: u64,
}

/// The result of a profiling run.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// On-CPU samples per stack.
    pub on_cpu: Vec<Sample>,
    /// Off-CPU nanoseconds per stack (empty unless enabled).
    pub off_cpu: Vec<Sample>,
    /// Samples taken by the kernel side.
    pub samples: u64,
    /// Samples dropped (count map full).
    pub dropped: u64,
    /// Samples whose stacks could not be read.
    pub stack_errors: u64,
    /// Sampling period (1 s / frequency), ns.
    pub period_ns: u64,
    /// Time from start to collect, ns.
    pub duration_ns: u64,
}

impl Profile {
    /// Folded stacks (`comm;frame;...;leaf value`, one line per distinct stack, sorted) as
    /// read by flamegraph tools.
    pub fn folded(samples: &[Sample]) -> String {
        let mut agg: HashMap<String, u64> = HashMap::new();
        for s in samples {
            let mut k = s.comm.replace(';', "_");
            for f in &s.frames {
                k.push(';');
                k.push_str(&f.replace([';', ' '], "_"));
            }
            *agg.entry(k).or_default() += s.value;
        }
        let mut v: Vec<_> = agg.into_iter().collect();
        v.sort();
        v.into_iter().map(|(k, n)| format!("{k} {n}\n")).collect()
    }

    /// The function with the most self (leaf) value, with that value.
    pub fn hottest(samples: &[Sample]) -> Option<(String, u64)> {
        let mut agg: HashMap<&str, u64> = HashMap::new();
        for s in samples {
            if let Some(f) = s.frames.last() {
                *agg.entry(f.as_str()).or_default() += s.value;
            }
        }
        agg.into_iter().max_by_key(|(_, v)| *v).map(|(k, v)| (k.to_string(), v))
    }

    /// Writes a flamegraph SVG of `samples` to `path`.
    pub fn write_svg(samples: &[Sample], title: &str, path: &Path) -> Result<()> {
        let folded = Self::folded(samples);
        let mut opts = inferno::flamegraph::Options::default();
        opts.title = title.to_string();
        let f =
            std::fs::File::create(path).map_err(|err| Error::Io { what: format!("create {}", path.display()), err })?;
        let w = std::io::BufWriter::new(f);
        inferno::flamegraph::from_lines(&mut opts, folded.lines(), w).map_err(|e| Error::Io {
            what: format!("write {}", path.display()),
            err: std::io::Error::other(e.to_string()),
        })
    }

    /// Writes `on_cpu.folded`, `on_cpu.pb` (pprof), `on_cpu.svg` and, when recorded, the
    /// same for `off_cpu` into `dir` (created). Returns the files written.
    pub fn write_dir(&self, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|err| Error::Io { what: format!("create {}", dir.display()), err })?;
        let mut out = Vec::new();
        let mut parts = vec![("on_cpu", &self.on_cpu, "On-CPU (samples)")];
        if !self.off_cpu.is_empty() {
            parts.push(("off_cpu", &self.off_cpu, "Off-CPU (ns blocked)"));
        }
        for (name, samples, title) in parts {
            let folded = dir.join(format!("{name}.folded"));
            std::fs::write(&folded, Self::folded(samples))
                .map_err(|err| Error::Io { what: format!("write {}", folded.display()), err })?;
            out.push(folded);
            let (ty, unit, period) =
                if name == "on_cpu" { ("samples", "count", self.period_ns) } else { ("off_cpu", "nanoseconds", 0) };
            let pb = dir.join(format!("{name}.pb"));
            std::fs::write(&pb, super::pprof::encode(samples, ty, unit, period, self.duration_ns))
                .map_err(|err| Error::Io { what: format!("write {}", pb.display()), err })?;
            out.push(pb);
            if !samples.is_empty() {
                let svg = dir.join(format!("{name}.svg"));
                Self::write_svg(samples, title, &svg)?;
                out.push(svg);
            }
        }
        Ok(out)
    }
}

/// A running profiler. Dropping it detaches the perf events.
pub struct Profiler {
    bpf: Ebpf,
    cfg: ProfilerConfig,
    started: std::time::Instant,
}

/// Online CPUs from `/sys/devices/system/cpu/online` (`0-3,5`).
pub fn online_cpus() -> Vec<u32> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let mut v = Vec::new();
    for part in s.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    v.extend(a..=b.min(a + 4096));
                }
            }
            None => v.extend(part.parse::<u32>().ok()),
        }
    }
    v
}

impl Profiler {
    /// Loads the profiler and starts sampling every online CPU.
    pub fn start(cfg: &ProfilerConfig) -> Result<Profiler> {
        super::check_environment()?;
        let obj = object("profiler")?;
        let target = cfg.pid.unwrap_or(0);
        let mut bpf = EbpfLoader::new()
            .override_global("df_cfg_target_pid", &target, true)
            .load(obj)
            .map_err(|e| load_err("profiler.bpf.o", e))?;
        {
            let p: &mut PerfEvent = bpf
                .program_mut("df_on_cpu")
                .ok_or_else(|| load_err("df_on_cpu", "program not in object"))?
                .try_into()
                .map_err(|e| load_err("df_on_cpu", e))?;
            p.load().map_err(|e| load_err("df_on_cpu", e))?;
            for cpu in online_cpus() {
                p.attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Frequency(cfg.frequency.clamp(1, 10_000)),
                    false,
                )
                .map_err(|e| attach_err(&format!("perf_event cpu-clock on cpu {cpu}"), e))?;
            }
        }
        if cfg.off_cpu {
            let p: &mut TracePoint = bpf
                .program_mut("df_sched_switch")
                .ok_or_else(|| load_err("df_sched_switch", "program not in object"))?
                .try_into()
                .map_err(|e| load_err("df_sched_switch", e))?;
            p.load().map_err(|e| load_err("df_sched_switch", e))?;
            p.attach("sched", "sched_switch").map_err(|e| attach_err("sched/sched_switch", e))?;
        }
        Ok(Profiler { bpf, cfg: cfg.clone(), started: std::time::Instant::now() })
    }

    /// Reads the counts so far and symbolizes them (call while the profiled processes still
    /// run: their memory maps are read from /proc).
    pub fn collect(&mut self) -> Result<Profile> {
        let mut prof = Profile {
            period_ns: 1_000_000_000 / self.cfg.frequency.clamp(1, 10_000),
            duration_ns: self.started.elapsed().as_nanos() as u64,
            ..Profile::default()
        };
        let mut sym = Symbolizer::new();
        let stacks: StackTraceMap<&MapData> =
            StackTraceMap::try_from(self.bpf.map("df_stacks").ok_or_else(|| load_err("df_stacks", "missing"))?)
                .map_err(|e| load_err("df_stacks", e))?;
        let mut stack_cache: HashMap<(bool, i32, u32), Vec<String>> = HashMap::new();
        let mut frames_of = |user: bool, id: i32, pid: u32, sym: &mut Symbolizer| -> Vec<String> {
            if id < 0 {
                return Vec::new();
            }
            stack_cache
                .entry((user, id, if user { pid } else { 0 }))
                .or_insert_with(|| {
                    let Ok(st) = stacks.get(&(id as u32), 0) else { return Vec::new() };
                    // frames are leaf first
                    st.frames()
                        .iter()
                        .rev()
                        .map(|f| if user { sym.user(pid, f.ip) } else { sym.kernel(f.ip) })
                        .collect()
                })
                .clone()
        };
        for (map, off) in [("df_counts", false), ("df_offcpu_ns", true)] {
            if off && !self.cfg.off_cpu {
                continue;
            }
            let m: BpfHashMap<&MapData, DfStackKey, u64> =
                BpfHashMap::try_from(self.bpf.map(map).ok_or_else(|| load_err(map, "missing"))?)
                    .map_err(|e| load_err(map, e))?;
            for item in m.iter() {
                let Ok((k, v)) = item else { continue };
                let mut frames = frames_of(true, k.user_stack_id, k.pid, &mut sym);
                frames.extend(frames_of(false, k.kernel_stack_id, k.pid, &mut sym));
                if frames.is_empty() {
                    frames.push("[no stack]".into());
                }
                let s = Sample { pid: k.pid, tid: k.tid, comm: comm_str(&k.comm), frames, value: v };
                if off { prof.off_cpu.push(s) } else { prof.on_cpu.push(s) }
            }
        }
        if let Some(m) = self.bpf.map("df_pstats")
            && let Ok(arr) = PerCpuArray::<_, DfProfileStats>::try_from(m)
            && let Ok(v) = arr.get(&0, 0)
        {
            for c in v.iter() {
                prof.samples += c.samples;
                prof.dropped += c.dropped;
                prof.stack_errors += c.stack_errors;
            }
        }
        Ok(prof)
    }
}
