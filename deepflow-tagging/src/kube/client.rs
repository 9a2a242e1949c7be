//! A blocking client for the Kubernetes REST API: list (paginated) and watch (JSON lines), over
//! HTTPS with a bearer token and a CA bundle.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use ureq::Agent;
use ureq::tls::{PemItem, RootCerts, TlsConfig};

use super::objects::{ApiStatus, ObjectList, WatchEvent};
use super::{KubeError, Resource};

/// How to reach an apiserver.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    /// Base URL, e.g. `https://10.96.0.1:443` (or `http://127.0.0.1:8001` behind `kubectl proxy`).
    pub server: String,
    /// Bearer token (service-account token).
    pub token: Option<String>,
    /// PEM CA bundle that signed the apiserver certificate; `None` = the bundled web PKI roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Server-side watch duration (`timeoutSeconds`); a watch returns after at most this long,
    /// which also bounds how long a stop request waits.
    pub watch_timeout: Duration,
    /// Page size for lists (`limit`).
    pub page_size: u32,
    /// Largest list/page body accepted, in bytes.
    pub max_body: u64,
}

impl KubeConfig {
    /// A config for `server` with defaults (10 s connect, 290 s watches, 500-item pages).
    pub fn new(server: impl Into<String>) -> Self {
        KubeConfig {
            server: server.into(),
            token: None,
            ca_pem: None,
            connect_timeout: Duration::from_secs(10),
            watch_timeout: Duration::from_secs(290),
            page_size: 500,
            max_body: 512 << 20,
        }
    }

    /// Sets the bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the CA bundle (PEM).
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// The in-cluster config: `KUBERNETES_SERVICE_HOST`/`_PORT` and the service-account token
    /// and CA under `/var/run/secrets/kubernetes.io/serviceaccount/`.
    pub fn in_cluster() -> Result<Self, KubeError> {
        Self::in_cluster_from(Path::new("/var/run/secrets/kubernetes.io/serviceaccount"))
    }

    /// Like [`KubeConfig::in_cluster`] with another service-account directory.
    pub fn in_cluster_from(dir: &Path) -> Result<Self, KubeError> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST")
            .map_err(|_| KubeError::Config("KUBERNETES_SERVICE_HOST is not set (not running in a pod?)".into()))?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        let read = |f: &str| {
            std::fs::read(dir.join(f)).map_err(|e| KubeError::Config(format!("{}: {e}", dir.join(f).display())))
        };
        let token = String::from_utf8_lossy(&read("token")?).trim().to_string();
        Ok(KubeConfig::new(format!("https://{host}:{port}")).with_token(token).with_ca_pem(read("ca.crt")?))
    }
}

/// The result of a list: objects and the collection's resourceVersion.
pub(crate) struct Listed {
    pub items: Vec<super::objects::KubeObject>,
    pub resource_version: String,
}

/// A blocking apiserver client.
#[derive(Debug, Clone)]
pub struct KubeClient {
    agent: Agent,
    config: KubeConfig,
}

impl KubeClient {
    /// Builds the HTTP agent (TLS roots from the CA bundle, timeouts).
    pub fn new(config: KubeConfig) -> Result<Self, KubeError> {
        let mut tls = TlsConfig::builder();
        if let Some(pem) = &config.ca_pem {
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(pem) {
                match item.map_err(|e| KubeError::Config(format!("CA bundle: {e}")))? {
                    PemItem::Certificate(c) => certs.push(c),
                    _ => continue,
                }
            }
            if certs.is_empty() {
                return Err(KubeError::Config("CA bundle has no certificate".into()));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        let agent: Agent = Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_per_read(Some(config.watch_timeout + Duration::from_secs(30)))
            .max_redirects(0)
            .build()
            .into();
        Ok(KubeClient { agent, config })
    }

    /// The config.
    pub fn config(&self) -> &KubeConfig {
        &self.config
    }

    fn get(&self, r: Resource, path_and_query: &str) -> Result<ureq::http::Response<ureq::Body>, KubeError> {
        let url = format!("{}{}", self.config.server.trim_end_matches('/'), path_and_query);
        let mut req = self.agent.get(&url).header("Accept", "application/json");
        if let Some(t) = &self.config.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let resp =
            req.call().map_err(|e| KubeError::Http { resource: r.name(), url: url.clone(), message: e.to_string() })?;
        let code = resp.status().as_u16();
        if (200..300).contains(&code) {
            return Ok(resp);
        }
        let mut body = resp.into_body();
        let text = body.with_config().limit(64 << 10).read_to_string().unwrap_or_default();
        let st: ApiStatus = serde_json::from_str(&text).unwrap_or_default();
        let message = st.message.unwrap_or_else(|| text.chars().take(300).collect());
        if code == 410 {
            return Err(KubeError::Gone { resource: r.name(), message });
        }
        Err(KubeError::Status { resource: r.name(), code, reason: st.reason.unwrap_or_default(), message })
    }

    /// Lists every object of `r` (following `continue` tokens).
    pub(crate) fn list(&self, r: Resource) -> Result<Listed, KubeError> {
        let mut items = Vec::new();
        let mut cont: Option<String> = None;
        loop {
            let mut q = format!("{}?limit={}", r.path(), self.config.page_size);
            if let Some(c) = &cont {
                q.push_str("&continue=");
                q.push_str(&encode(c));
            }
            let resp = self.get(r, &q)?;
            let bytes = resp
                .into_body()
                .with_config()
                .limit(self.config.max_body)
                .read_to_vec()
                .map_err(|e| KubeError::Truncated { resource: r.name(), message: format!("list body: {e}") })?;
            let page: ObjectList = serde_json::from_slice(&bytes)
                .map_err(|e| KubeError::Decode { resource: r.name(), message: format!("list response: {e}") })?;
            items.extend(page.items);
            match page.metadata.continue_token.filter(|c| !c.is_empty()) {
                Some(c) => cont = Some(c),
                None => {
                    let resource_version = page.metadata.resource_version.unwrap_or_default();
                    return Ok(Listed { items, resource_version });
                }
            }
        }
    }

    /// Starts a watch from `resource_version`; events are read with [`WatchStream::next_event`].
    pub(crate) fn watch(&self, r: Resource, resource_version: &str) -> Result<WatchStream, KubeError> {
        let q = format!(
            "{}?watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={}",
            r.path(),
            encode(resource_version),
            self.config.watch_timeout.as_secs().max(1)
        );
        let resp = self.get(r, &q)?;
        let reader = resp.into_body().into_reader();
        Ok(WatchStream { resource: r, reader: BufReader::new(Box::new(reader)), line: Vec::new() })
    }
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An open watch: one JSON event per line.
pub(crate) struct WatchStream {
    resource: Resource,
    reader: BufReader<Box<dyn Read + Send>>,
    line: Vec<u8>,
}

impl WatchStream {
    /// The next event; `Ok(None)` at a clean end of stream (server timeout).
    pub fn next_event(&mut self) -> Result<Option<WatchEvent>, KubeError> {
        loop {
            self.line.clear();
            let n = self.reader.read_until(b'\n', &mut self.line).map_err(|e| KubeError::Truncated {
                resource: self.resource.name(),
                message: format!("watch stream: {e}"),
            })?;
            if n == 0 {
                return Ok(None);
            }
            if self.line.last() != Some(&b'\n') {
                return Err(KubeError::Truncated {
                    resource: self.resource.name(),
                    message: format!("watch stream ended inside an event ({n} bytes without newline)"),
                });
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return serde_json::from_slice(&self.line).map(Some).map_err(|e| KubeError::Decode {
                resource: self.resource.name(),
                message: format!("watch event: {e}"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn encode_query() {
        assert_eq!(super::encode("abc-123"), "abc-123");
        assert_eq!(super::encode("a b/c=&"), "a%20b%2Fc%3D%26");
    }
}
