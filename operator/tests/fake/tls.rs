//! The fake Kubernetes API served over HTTPS on a local port, the way a real API server is
//! reached: a kubeconfig naming `https://127.0.0.1:<port>` and the test CA. The certificate is
//! committed in tests/tls (a test CA and a server certificate for 127.0.0.1, valid 2000-2100,
//! made with `openssl ca`; the keys protect nothing).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::FakeKube;

fn tls_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls")
}

/// The CA that signed the server certificate.
pub(crate) fn ca_path() -> PathBuf {
    tls_dir().join("ca.crt")
}

impl FakeKube {
    /// Serves this fake over HTTPS on 127.0.0.1 until the runtime ends; returns the URL.
    pub(crate) async fn serve_tls(&self) -> String {
        let certs = CertificateDer::pem_file_iter(tls_dir().join("server.crt"))
            .expect("server.crt")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate");
        let key = PrivateKeyDer::from_pem_file(tls_dir().join("server.key")).expect("server.key");
        // The server side names its provider, so it works whatever the process default is.
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let fake = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, fake) = (acceptor.clone(), fake.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let fake = fake.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let req = hyper::Request::from_parts(parts, kube::client::Body::from(bytes.to_vec()));
                            Ok::<_, std::convert::Infallible>(fake.handle(req).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        url
    }
}

/// A kubeconfig for `server` that trusts the test CA and sends a bearer token.
pub(crate) fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: test\n  user:\n    token: test-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: test\n    namespace: default\ncurrent-context: fake\n",
        ca_path().display()
    )
}
