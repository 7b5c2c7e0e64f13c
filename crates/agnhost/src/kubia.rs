//! `kubia` and `kubia-unhealthy` (ferry extensions): the Node.js apps of the book "Kubernetes in Action"
//! (`luksa/kubia`, `kubia/manual`, `yinzige/kubia`, `luksa/kubia-unhealthy`). Both listen on :8080 and answer every
//! request with `You've hit <hostname>\n`; the unhealthy one answers 500 `I'm not well. Please restart me!` from the
//! sixth request on. They log `Kubia server starting...` and one `Received request from <address>` per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::StatusCode;
use tokio::net::TcpListener;

use crate::golang;
use crate::web::{self, HttpServer, Request, Response};
use crate::{BindHost, HostnameSource};

/// The apps' fixed port.
pub const PORT: u16 = 8080;
/// How many requests `kubia-unhealthy` answers successfully before it answers 500.
pub const HEALTHY_REQUESTS: u64 = 5;

/// Which of the book's apps to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubiaVariant {
    /// `luksa/kubia`: always 200.
    Healthy,
    /// `luksa/kubia-unhealthy`: 500 after the fifth request.
    Unhealthy,
}

/// A bound, not yet serving, kubia app.
pub struct Kubia {
    listener: TcpListener,
    variant: KubiaVariant,
    hostname: HostnameSource,
}

impl Kubia {
    /// Binds `host:port` (:8080 in the images).
    pub async fn bind(
        host: BindHost,
        port: u16,
        variant: KubiaVariant,
        hostname: HostnameSource,
    ) -> std::io::Result<Kubia> {
        Ok(Kubia { listener: web::bind_tcp(host, port).await?, variant, hostname })
    }

    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves forever (the process ends by signal: the app installs no handler).
    pub async fn run(self) -> i32 {
        println!("Kubia server starting...");
        let served = Arc::new(AtomicU64::new(0));
        let (variant, hostname) = (self.variant, self.hostname);
        let handler = web::handler(move |req: Request| {
            let served = served.clone();
            let hostname = hostname.clone();
            async move {
                let remote = req.remote.map(|a| a.ip().to_canonical().to_string()).unwrap_or_default();
                println!("Received request from {remote}");
                let count = served.fetch_add(1, Ordering::SeqCst) + 1;
                if variant == KubiaVariant::Unhealthy && count > HEALTHY_REQUESTS {
                    return Response::text("I'm not well. Please restart me!")
                        .with_status(StatusCode::INTERNAL_SERVER_ERROR)
                        .into();
                }
                let name = hostname.get().unwrap_or_default();
                Response::text(format!("You've hit {name}\n")).into()
            }
        });
        let _server = HttpServer::spawn(self.listener, None, handler);
        std::future::pending().await
    }
}

pub(crate) async fn main(variant: KubiaVariant) -> i32 {
    match Kubia::bind(BindHost::Any, PORT, variant, HostnameSource::System).await {
        Ok(app) => app.run().await,
        Err(err) => crate::fatal(&format!("listen tcp :{PORT}: bind: {}", golang::errno_text(&err))),
    }
}
