//! The way to aifactoryd: every REST request opens its own short connection through the
//! `aifactory-common` client, and every stream (events, console) holds one for its lifetime.
//! So the shim keeps no state, a daemon restart never leaves it holding a dead connection, and
//! a stream whose web client stalls can only slow its own connection.

use std::path::Path;
use std::sync::Arc;

use aifactory_common::protocol::Request;
use aifactory_common::{Client, ClientError, ClientOptions, Subscription};

use crate::error::ApiError;

#[derive(Clone)]
pub struct Daemon {
    opts: Arc<ClientOptions>,
}

impl Daemon {
    pub fn new(socket: &Path) -> Daemon {
        Daemon {
            opts: Arc::new(ClientOptions::new(socket, "aifactory-http")),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.opts.socket
    }

    pub async fn connect(&self) -> Result<Client, ApiError> {
        Client::connect(&self.opts)
            .await
            .map_err(|e| ApiError::from_client(e, self.socket()))
    }

    /// One request on a connection of its own: `ask` calls one typed method of the client,
    /// and whatever fails becomes the API's error here, once.
    pub async fn call<T>(
        &self,
        ask: impl AsyncFnOnce(&Client) -> Result<T, ClientError>,
    ) -> Result<T, ApiError> {
        let client = self.connect().await?;
        ask(&client)
            .await
            .map_err(|e| ApiError::from_client(e, self.socket()))
    }

    /// Opens a stream on a connection of its own; the client must live as long as the stream.
    pub async fn subscribe(&self, request: Request) -> Result<(Client, Subscription), ApiError> {
        let client = self.connect().await?;
        let subscription = client
            .subscribe(request)
            .await
            .map_err(|e| ApiError::from_client(e, self.socket()))?;
        Ok((client, subscription))
    }
}
