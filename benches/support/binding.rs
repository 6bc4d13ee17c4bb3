//! The load benchmark's Maskinporten side: the stand-in that speaks the real
//! protocol (tests/it/common/maskinporten.rs, the tests' own), given fixtures
//! for the example world's system users; the configuration file that points
//! `vakt serve` at it, with Envoy routes covering the benchmark's request mix;
//! and a token request sent to it directly, as Vakt sends one (fresh grant,
//! one connection per request), to time Maskinporten's round trip on its own.

// The tests' stand-in, as is: the benchmark measures against the same protocol
// the tests enforce. Not every part of it is used here.
#[allow(dead_code)]
#[path = "../../tests/it/common/maskinporten.rs"]
mod standin;

pub use standin::{StandIn, CLIENT_ID, CLIENT_KID, SCOPE};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The example world's system users that the mix names: (id, owner org,
/// externalRef), as examples/world/system-users.yaml has them.
pub const SYSTEM_USERS: &[(&str, &str, &str)] = &[
    ("tk-regnskap", "310001015", "tk-regnskap"),
    ("rr-regnskap", "310003034", "rr-regnskap"),
];

/// Starts a stand-in with the example world's system users as fixtures; tokens
/// live `lifetime`.
pub async fn start_standin(lifetime: Duration) -> StandIn {
    let s = StandIn::start().await;
    // Vakt hands out a token only if it names the decided system user: the
    // stand-in's id for each is the world's.
    for (id, org, external_ref) in SYSTEM_USERS {
        s.add_fixture(org, Some(external_ref), id, Some("bench"));
    }
    s.set_token_lifetime(lifetime.as_secs());
    s
}

/// Writes `vakt serve`'s configuration file for `standin` into `dir` (with the
/// client's key, mode 0600): `[maskinporten]` with the package's scope, and
/// Envoy's routes. The mix's requests match the last route, after two that
/// do not, so route matching costs what it would in a small table. The
/// system user is named in `x-vakt-system-user`, the employee in
/// `x-vakt-employee`, the client in the path.
pub fn write_config(standin: &StandIn, dir: &Path, name: &str, package: &str) -> PathBuf {
    let key_file = standin::write_private(
        dir,
        &format!("{name}-client.key"),
        &standin::key(1).pkcs8_pem,
    );
    let text = format!(
        r#"[maskinporten]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
key_file = "{key_file}"
kid = "{CLIENT_KID}"

[maskinporten.scopes]
"{package}" = ["{SCOPE}"]

[envoy]
employee_header = "x-vakt-employee"
system_user_header = "x-vakt-system-user"

[[route]]
name = "instantiate"
host = "*.apps.altinn.no"
methods = ["POST"]
path = "/{{org}}/{{app}}/instances"
package = "{package}"
client = {{ body = "/instanceOwner/organisationNumber" }}
token = "maskinporten"

[[route]]
name = "instance"
host = "*.apps.altinn.no"
methods = ["GET", "PUT", "DELETE"]
path = "/{{org}}/{{app}}/instances/{{instanceOwnerPartyId}}/**"
package = "{package}"
client = {{ path = "instanceOwnerPartyId", kind = "party-id" }}
token = "maskinporten"

[[route]]
name = "register"
host = "platform.altinn.no"
methods = ["GET"]
path = "/register/api/v1/organizations/{{orgno}}/**"
package = "{package}"
client = {{ path = "orgno" }}
token = "maskinporten"
"#,
        issuer = standin.issuer,
        key_file = key_file.display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A grant for the first system user, as Vakt signs one (RS256, kid, the
/// issuer as audience, 60 s, a fresh jti, one `authorization_details`).
pub fn sign_grant(standin: &StandIn) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (_, org, external_ref) = SYSTEM_USERS[0];
    let claims = serde_json::json!({
        "aud": standin.issuer,
        "iss": CLIENT_ID,
        "iat": now,
        "exp": now + 60,
        "jti": uuid::Uuid::new_v4().to_string(),
        "scope": SCOPE,
        "authorization_details": [{
            "type": "urn:altinn:systemuser",
            "systemuser_org": {"authority": "iso6523-actorid-upis", "ID": format!("0192:{org}")},
            "externalRef": external_ref,
        }],
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(CLIENT_KID.into());
    jsonwebtoken::encode(&header, &claims, &standin::key(1).encoding).unwrap()
}

/// One token request to the stand-in's `/token` with `grant`, as Vakt's client
/// sends it (its own connection, HTTP/1.1, the form, the whole answer read):
/// the time it took and the access token.
pub async fn direct_token(standin: &StandIn, grant: &str) -> (Duration, String) {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
        .append_pair("assertion", grant)
        .finish();
    let t0 = Instant::now();
    let tcp = tokio::net::TcpStream::connect(standin.addr).await.unwrap();
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri("/token")
        .header(hyper::header::HOST, standin.addr.to_string())
        .header(hyper::header::ACCEPT, "application/json")
        .header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(Full::new(Bytes::from(form)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let elapsed = t0.elapsed();
    driver.abort();
    assert_eq!(
        status,
        200,
        "the stand-in's /token refused the grant: {}",
        String::from_utf8_lossy(&body)
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let token = v["access_token"].as_str().unwrap_or_default().to_owned();
    (elapsed, token)
}
