//! Downloads of the public AWS Price List bulk files (no credentials, no
//! IAM): `region_index.json` of each Bedrock offer code, then each wanted
//! Region's current file. Shared by the Lambda and `bedrock-meter prices
//! sync --fetch`.

use std::future::Future;

use anyhow::{bail, Context};
use meter_core::pricelist::offer::{self, OfferFile};

/// The public Price List endpoint.
pub const PRICE_LIST_URL: &str = "https://pricing.us-east-1.amazonaws.com";

/// Offer files are a few MB; refuse anything absurd.
const MAX_OFFER_BYTES: usize = 256 * 1024 * 1024;

/// Where offer files come from (the endpoint, or a test's fixtures).
pub trait OfferSource: Send + Sync {
    fn offers(
        &self,
        regions: &[String],
    ) -> impl Future<Output = anyhow::Result<Vec<OfferFile>>> + Send;
}

/// The Price List bulk endpoint at `base_url`.
pub struct PriceListEndpoint {
    pub base_url: String,
}

impl OfferSource for PriceListEndpoint {
    async fn offers(&self, regions: &[String]) -> anyhow::Result<Vec<OfferFile>> {
        fetch_offers(&self.base_url, regions).await
    }
}

/// Downloads `region_index.json` of each offer code, then the current file
/// of each wanted Region the offer has.
pub async fn fetch_offers(base_url: &str, regions: &[String]) -> anyhow::Result<Vec<OfferFile>> {
    let client = HttpClient::new()?;
    let base_url = base_url.trim_end_matches('/');
    let mut files = Vec::new();
    for code in offer::OFFER_CODES {
        let url = format!("{base_url}/offers/v1.0/aws/{code}/current/region_index.json");
        let text = client.get(&url).await?;
        let OfferFile::RegionIndex(index) = offer::parse_file(&url, &text)? else {
            bail!("{url} is not a region index");
        };
        for region in regions {
            let Some(path) = index.get(region) else {
                tracing::info!(offer = code, region = %region, "offer has no file for this Region");
                continue;
            };
            let url = if path.starts_with("http") {
                path.clone()
            } else {
                format!("{base_url}{path}")
            };
            let text = client.get(&url).await?;
            let file = offer::parse_file(&url, &text)?;
            if let OfferFile::Offer { offer, .. } = &file {
                if offer != code {
                    bail!("{url} holds offer `{offer}`, expected `{code}`");
                }
            }
            files.push(file);
        }
    }
    Ok(files)
}

struct HttpClient {
    inner: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        http_body_util::Empty<hyper::body::Bytes>,
    >,
}

impl HttpClient {
    fn new() -> anyhow::Result<HttpClient> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .context("cannot load the system's root certificates")?
            .https_or_http()
            .enable_http1()
            .build();
        let inner =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(HttpClient { inner })
    }

    async fn get(&self, url: &str) -> anyhow::Result<String> {
        use http_body_util::BodyExt;
        let uri: hyper::Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
        let response = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            let response = self.inner.get(uri).await?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_OFFER_BYTES)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .to_bytes();
            anyhow::Ok((status, body))
        })
        .await
        .with_context(|| format!("GET {url} timed out"))?
        .with_context(|| format!("GET {url} failed"))?;
        let (status, body) = response;
        if !status.is_success() {
            bail!("GET {url}: HTTP {status}");
        }
        String::from_utf8(body.to_vec()).with_context(|| format!("GET {url}: not UTF-8"))
    }
}
