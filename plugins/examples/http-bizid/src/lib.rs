//! Example hook plugin: HTTP business-id extractor.
//!
//! On every HTTP/1, HTTP/2 and gRPC message:
//! * attribute `order_id` from the `X-Order-Id` header, else from an `"order_id"` field
//!   (string or number) of a JSON body excerpt;
//! * requests to `/orders/<id>` (query ignored) get endpoint `/orders/{id}`, so RED metrics
//!   aggregate all orders into one endpoint instead of one per order.

use deepflow_plugin_sdk::{Changes, Hook, Info, View};

/// The hook.
pub struct BizId;

/// Value of the first `"order_id"` JSON member in `body` (string or number), if any.
pub fn json_order_id(body: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"order_id\"";
    let mut from = 0;
    while let Some(pos) = body.get(from..)?.windows(KEY.len()).position(|w| w == KEY) {
        let mut i = from + pos + KEY.len();
        from = i;
        while body.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if body.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        while body.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let rest = body.get(i..)?;
        let v = if let Some(s) = rest.strip_prefix(b"\"") {
            let end = s.iter().position(|&b| b == b'"' || b == b'\\')?;
            s.get(..end)?
        } else {
            let end = rest.iter().position(|b| !(b.is_ascii_digit() || *b == b'-')).unwrap_or(rest.len());
            rest.get(..end)?
        };
        if !v.is_empty() && v.len() <= 128 {
            return core::str::from_utf8(v).ok().map(str::to_string);
        }
    }
    None
}

/// `/orders/{id}` when `resource` is `/orders/<one segment>`.
pub fn order_endpoint(resource: &str) -> Option<&'static str> {
    let path = resource.split(['?', '#']).next().unwrap_or_default();
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    match (segs.next(), segs.next(), segs.next()) {
        (Some("orders"), Some(_), None) => Some("/orders/{id}"),
        _ => None,
    }
}

impl Hook for BizId {
    fn info() -> Info {
        Info { subscribe: "http,http2,grpc", ..Info::named("http-bizid") }
    }

    fn on_message(msg: &View<'_>) -> Changes {
        let mut c = Changes::default();
        let id = msg.header("x-order-id").map(|v| v.trim().to_string()).or_else(|| json_order_id(msg.body()));
        if let Some(id) = id.filter(|v| !v.is_empty()) {
            c.attributes.push(("order_id".into(), id));
        }
        if let Some(ep) = msg.get_str("request_resource").and_then(order_endpoint) {
            c.endpoint = Some(ep.into());
        }
        c
    }
}

deepflow_plugin_sdk::export_hook!(BizId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json() {
        assert_eq!(json_order_id(br#"{"a":1, "order_id" : "A-7"}"#).as_deref(), Some("A-7"));
        assert_eq!(json_order_id(br#"{"order_id":1234,"x":2}"#).as_deref(), Some("1234"));
        assert_eq!(json_order_id(br#"{"order_id_x":1, "order_id": 5}"#).as_deref(), Some("5"));
        assert_eq!(json_order_id(br#"{"order_id"}"#), None);
        assert_eq!(order_endpoint("/orders/17?x=1"), Some("/orders/{id}"));
        assert_eq!(order_endpoint("/orders"), None);
        assert_eq!(order_endpoint("/orders/1/items"), None);
    }
}
