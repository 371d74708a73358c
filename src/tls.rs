//! TLS on the gRPC port: rustls, the certificate chain, its key and (for
//! mutual TLS) the client CA read from PEM files, and read again while
//! serving.
//!
//! Long-lived deployments rotate certificates by replacing the files
//! (cert-manager, Vault agents, a Kubernetes Secret volume); a restart per
//! rotation would drop every connection. So each handshake takes the
//! configuration current at that moment, and [`ReloadingTls::watch`] reads
//! the files again every interval and on SIGHUP: when their bytes changed and
//! they load, new handshakes use them, while open connections keep what they
//! negotiated. Files that do not load — a key written before its
//! certificate, a chain that does not match the key — are logged and the
//! previous configuration stays: a bad rotation must not take serving down.
//! At start-up the same failure is an error, naming the file.
//!
//! Each handshake runs in its own task, bounded by [`HANDSHAKE_TIMEOUT`], so
//! a client that connects and stays silent delays no one else's connection.
//! A client that offers no certificate, or one the client CA did not sign,
//! is refused in the handshake, before any gRPC is spoken.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long a client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the PEM files are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

/// The files' bytes when last loaded: a reload that reads the same bytes
/// changes nothing.
#[derive(PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

struct Loaded {
    contents: Contents,
    config: Arc<ServerConfig>,
}

/// The current server configuration, replaced when the files change.
#[derive(Clone)]
pub struct ReloadingTls {
    files: Arc<TlsFiles>,
    loaded: Arc<RwLock<Loaded>>,
}

impl ReloadingTls {
    /// Loads the files; an error names the file that does not load.
    pub async fn load(files: TlsFiles) -> anyhow::Result<Self> {
        let contents = read(&files).await?;
        let config = configure(&files, &contents)?;
        Ok(Self {
            files: Arc::new(files),
            loaded: Arc::new(RwLock::new(Loaded {
                contents,
                config: Arc::new(config),
            })),
        })
    }

    /// Reads the files again; `Ok(true)` when they changed and now serve.
    /// On an error the previous configuration stays.
    pub async fn reload(&self) -> anyhow::Result<bool> {
        let contents = read(&self.files).await?;
        if self.loaded().contents == contents {
            return Ok(false);
        }
        let config = configure(&self.files, &contents)?;
        let mut loaded = self
            .loaded
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *loaded = Loaded {
            contents,
            config: Arc::new(config),
        };
        Ok(true)
    }

    fn loaded(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        // Only assignments happen under the write lock: a poisoned lock
        // still holds a whole configuration.
        self.loaded
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.loaded().config.clone()
    }

    /// Reloads every `interval` and on SIGHUP, until `stop`.
    pub async fn watch(self, interval: Duration, stop: CancellationToken) {
        let mut hangup = hangups();
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
                () = next_hangup(&mut hangup) => {
                    tracing::info!("SIGHUP: reading the TLS files again");
                }
            }
            match self.reload().await {
                Ok(true) => tracing::info!(
                    cert = %self.files.cert.display(),
                    "TLS files changed: new connections use them"
                ),
                Ok(false) => {}
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "TLS files changed but do not load; still serving the previous ones"
                ),
            }
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {}

#[cfg(unix)]
async fn next_hangup(hangups: &mut Hangups) {
    match hangups {
        Some(signal) => {
            if signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) {
    std::future::pending().await
}

async fn read(files: &TlsFiles) -> anyhow::Result<Contents> {
    async fn bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
        tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read {}", path.display()))
    }
    Ok(Contents {
        cert: bytes(&files.cert).await?,
        key: bytes(&files.key).await?,
        client_ca: match &files.client_ca {
            Some(path) => Some(bytes(path).await?),
            None => None,
        },
    })
}

fn configure(files: &TlsFiles, contents: &Contents) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(ring::default_provider());
    let chain = certificates(&files.cert, &contents.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&contents.key)
        .with_context(|| format!("{}: no private key in PEM", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match (&files.client_ca, &contents.client_ca) {
        (Some(path), Some(pem)) => builder.with_client_cert_verifier(
            client_verifier(path, pem, provider).with_context(|| path.display().to_string())?,
        ),
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).with_context(|| {
        format!(
            "{} and {} do not make a certificate and its key",
            files.cert.display(),
            files.key.display()
        )
    })?;
    // gRPC is HTTP/2 only; clients (grpc-go among them) require the
    // protocol to be negotiated.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn certificates(path: &Path, pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{}: no certificate in PEM",
        path.display()
    );
    Ok(chain)
}

fn client_verifier(
    path: &Path,
    pem: &[u8],
    provider: Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn tokio_rustls::rustls::server::danger::ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path, pem)? {
        roots
            .add(certificate)
            .context("not a usable CA certificate")?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .context("building the client certificate verifier")
}

/// A client configuration trusting only the CA certificates in `path`
/// (PEM): for dependencies whose server certificates a private CA signed.
pub fn client_roots(path: &Path) -> anyhow::Result<tokio_rustls::rustls::ClientConfig> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path, &pem)? {
        roots
            .add(certificate)
            .context("not a usable CA certificate")?;
    }
    Ok(tokio_rustls::rustls::ClientConfig::builder_with_provider(
        Arc::new(ring::default_provider()),
    )
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// The connections accepted on `listener` that completed a handshake, until
/// `stop` or until the server stops taking them. The listener closes when
/// this ends, so new connections are refused from then on.
pub fn incoming(
    listener: TcpListener,
    tls: ReloadingTls,
    stop: CancellationToken,
) -> ReceiverStream<io::Result<TlsConnection>> {
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                () = sender.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: wait rather
                    // than spin; tonic's own accept loop does the same.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
            let sender = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send(Ok(TlsConnection(stream))).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake refused"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}

/// A TLS connection that tells tonic its addresses as a plain TCP one
/// would, so everything reading the peer (the audit trail's
/// `peer_address`) reads it the same way whether TLS is on or not.
pub struct TlsConnection(TlsStream<TcpStream>);

impl Connected for TlsConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(context, buffer)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(context, buffer)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(context)
    }
}
