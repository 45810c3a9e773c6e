//! `bedrock-meter dashboard`: a small local HTTP server over the pages of
//! meter-views, reading the usage table with the operator's credentials.
//! GET only; every response carries a strict Content-Security-Policy.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use meter_core::Day;
use meter_store::{Config, DynamoDbUsageStore};
use meter_views::{Mode, Options, ReadError};
use time::OffsetDateTime;

#[derive(Args)]
pub struct DashboardArgs {
    /// Where to serve: HOST:PORT, or unix:PATH for a Unix socket (what
    /// `make dashboard` uses to reach a server inside a network namespace).
    /// Anything but a loopback address exposes the pages, which have no
    /// authentication of their own.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: String,
    /// Seconds between automatic refreshes of an open page (0: off).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    refresh: u32,
}

enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

fn parse_listen(s: &str) -> anyhow::Result<Listen> {
    if let Some(path) = s.strip_prefix("unix:") {
        anyhow::ensure!(
            !path.is_empty(),
            "--listen unix: needs a path, such as unix:/tmp/bm.sock"
        );
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    s.parse::<SocketAddr>().map(Listen::Tcp).with_context(|| {
        format!("--listen `{s}` is not an address like 127.0.0.1:8080 or [::1]:8080, nor unix:PATH")
    })
}

struct Server {
    store: DynamoDbUsageStore,
    refresh: u32,
    /// `ATTRIBUTION_TAGS`: the keys the pages link to (`/tags/{key}`).
    tag_keys: Vec<String>,
    /// Only requests naming a loopback host are served (DNS-rebinding
    /// guard); off for a non-loopback `--listen`.
    loopback_only: bool,
}

/// The text of a failed read shown on the page: the whole error chain.
fn describe(e: &ReadError) -> String {
    let mut out = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

fn loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn reply(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = res.headers_mut();
    let mut set = |k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set(header::CONTENT_TYPE, content_type);
    set(
        header::CONTENT_SECURITY_POLICY,
        meter_views::CONTENT_SECURITY_POLICY,
    );
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::CACHE_CONTROL, "no-store");
    res
}

impl Server {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let head = req.method() == Method::HEAD;
        if req.method() != Method::GET && !head {
            let mut r = reply(
                405,
                "text/plain; charset=utf-8",
                "the dashboard only answers GET\n".into(),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        if self.loopback_only {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !loopback_host(host) {
                return reply(
                    421,
                    "text/plain; charset=utf-8",
                    format!("this dashboard answers only http://127.0.0.1 or http://localhost, not host `{host}`\n"),
                );
            }
        }
        let path = req.uri().path();
        let query = req.uri().query().unwrap_or("");
        let opts = Options {
            mode: Mode::Page {
                refresh_secs: self.refresh,
            },
            rendered_at: now_rfc3339(),
        };
        let today = Day::of(OffsetDateTime::now_utc());
        let started = std::time::Instant::now();
        let r = meter_views::respond_with_tags(
            &self.store,
            path,
            query,
            today,
            &opts,
            &self.tag_keys,
            describe,
        )
        .await;
        tracing::debug!(
            status = r.status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "page served"
        );
        let mut res = reply(r.status, r.content_type, r.body);
        if head {
            *res.body_mut() = Full::new(Bytes::new());
        }
        res
    }
}

async fn serve<S>(server: Arc<Server>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(server.handle(req).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

pub async fn run(config: &Config, args: DashboardArgs) -> anyhow::Result<ExitCode> {
    let listen = parse_listen(&args.listen)?;
    let store = crate::store(config).await?;
    let loopback_only = match &listen {
        Listen::Tcp(a) => a.ip().is_loopback(),
        Listen::Unix(_) => true,
    };
    let server = Arc::new(Server {
        store,
        refresh: args.refresh,
        tag_keys: config.attribution_tags.clone(),
        loopback_only,
    });
    if !loopback_only {
        eprintln!(
            "bedrock-meter: warning: serving on {} (not loopback): the dashboard has no \
             authentication of its own; anyone who can reach this address sees every user's spend",
            args.listen
        );
    }
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    match listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} (in use? choose another with --listen)")
            })?;
            let local = listener.local_addr()?;
            println!(
                "bedrock-meter dashboard: http://{local}/ (table `{}`; Ctrl-C stops it)",
                config.table
            );
            loop {
                tokio::select! {
                    _ = &mut shutdown => break,
                    accepted = listener.accept() => {
                        let (stream, _) = accepted.context("accepting a connection")?;
                        tokio::spawn(serve(server.clone(), stream));
                    }
                }
            }
        }
        Listen::Unix(path) => {
            // A stale socket from an earlier run would make bind fail.
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing the old socket {}", path.display()))?;
            }
            let listener = tokio::net::UnixListener::bind(&path)
                .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
            println!(
                "bedrock-meter dashboard: unix:{} (table `{}`; Ctrl-C stops it)",
                path.display(),
                config.table
            );
            loop {
                tokio::select! {
                    _ = &mut shutdown => break,
                    accepted = listener.accept() => {
                        let (stream, _) = accepted.context("accepting a connection")?;
                        tokio::spawn(serve(server.clone(), stream));
                    }
                }
            }
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse_or_say_what_to_give() {
        assert!(matches!(parse_listen("127.0.0.1:8080"), Ok(Listen::Tcp(_))));
        assert!(matches!(parse_listen("[::1]:0"), Ok(Listen::Tcp(_))));
        assert!(matches!(
            parse_listen("unix:/tmp/x.sock"),
            Ok(Listen::Unix(_))
        ));
        let e = parse_listen("localhost").err().unwrap().to_string();
        assert!(e.contains("like 127.0.0.1:8080"), "{e}");
    }

    #[test]
    fn only_loopback_host_names_pass_the_rebinding_guard() {
        for ok in ["127.0.0.1:8080", "localhost:1", "[::1]:8080", "localhost"] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "",
            "10.0.0.1:8080",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }
}
