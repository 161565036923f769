//! MQTT over TLS on `mqtt.tls_listen` (SPEC 12): rustls in front of Landport's own endpoint.
//!
//! Each accepted connection gets [`HANDSHAKE_TIMEOUT`] to finish its TLS handshake; then the
//! endpoint serves the decrypted stream exactly as a plain one
//! ([`Endpoint::serve_stream`]), credentials and ACL included. A client that speaks plain MQTT
//! to this port, or refuses the certificate, fails the handshake and is disconnected: nothing
//! it sent reaches the endpoint.

use std::time::Duration;

use landport_api::tls::TlsAcceptor;
use landport_ingest::endpoint::Endpoint;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long a new connection has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TLS clients on `listener` until `stop`.
pub async fn serve(
    endpoint: Endpoint,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                tracing::warn!(error = %e, "MQTT over TLS: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (endpoint, acceptor) = (endpoint.clone(), acceptor.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => endpoint.serve_stream(tls, peer).await,
                // The client's failure (plain TCP, an unknown CA, a port scan): not ours to
                // log above debug.
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "MQTT over TLS: handshake failed"),
                Err(_) => tracing::debug!(%peer, "MQTT over TLS: handshake timed out"),
            }
        });
    }
}
