//! The pages' static files, embedded in the binary and served under content-hashed names
//! (`app.3f9a0c1b2d.css`) with a year-long, immutable cache lifetime: a new build changes the
//! name, so a browser never keeps a stale file and never asks twice for a current one.

use std::sync::LazyLock;

use axum::{
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The name in the source tree, for example `app.css`.
    pub name: &'static str,
    /// The name it is served under, with the first 10 hex digits of its SHA-256.
    pub hashed: String,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! embed {
    ($($name:literal => $content_type:literal),* $(,)?) => {
        [$(($name, $content_type, include_bytes!(concat!("../assets/", $name)).as_slice()),)*]
    };
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    embed![
        "app.css" => "text/css; charset=utf-8",
        "app.js" => "text/javascript; charset=utf-8",
        "icon.svg" => "image/svg+xml",
    ]
    .into_iter()
    .map(|(name, content_type, bytes)| {
        let digest = Sha256::digest(bytes);
        let hex = hex::encode(&digest[..5]);
        let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
        Asset {
            name,
            hashed: format!("{stem}.{hex}.{extension}"),
            content_type,
            bytes,
        }
    })
    .collect()
});

/// The URL path of an embedded file, by its source name.
///
/// # Panics
/// If `name` is not embedded: a typo in a template, caught by every page test.
pub fn url(name: &str) -> String {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no embedded asset named {name}"));
    format!("/assets/{}", asset.hashed)
}

/// Every embedded file.
pub fn all() -> &'static [Asset] {
    &ASSETS
}

/// `GET /assets/{name}`: the file, if `name` is a current hashed name.
pub async fn serve(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.hashed == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            asset.bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash_and_the_script_stays_small() {
        for asset in all() {
            let digest = Sha256::digest(asset.bytes);
            let hex = hex::encode(&digest[..5]);
            assert!(asset.hashed.contains(&hex), "{}", asset.hashed);
        }
        let script: usize = all()
            .iter()
            .filter(|a| a.name.ends_with(".js"))
            .map(|a| a.bytes.len())
            .sum();
        assert!(script < 30 * 1024, "hand-written script is {script} bytes");
    }
}
