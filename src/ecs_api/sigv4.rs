//! AWS Signature Version 4, checked on the server's side: the request's `Authorization`
//! header read, the canonical request rebuilt from what the client says it signed, the
//! signature computed with the key's secret and compared in constant time. Pure: the caller
//! gives the clock and the secrets.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const SERVICE: &str = "ecs";

/// Why a request's signature is refused, in the words AWS's front end uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("Request is missing Authentication Token")]
    Missing,
    #[error("{0}")]
    Incomplete(String),
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")]
    Mismatch,
    #[error("Signature expired: {date} is now earlier than {now} ({limit}) or later")]
    Expired {
        date: String,
        now: String,
        limit: String,
    },
}

impl SigError {
    /// The `__type` ECS's front end answers with.
    pub fn exception(&self) -> &'static str {
        match self {
            SigError::Missing => "MissingAuthenticationTokenException",
            SigError::Incomplete(_) => "IncompleteSignatureException",
            SigError::UnknownKey => "UnrecognizedClientException",
            SigError::Mismatch | SigError::Expired { .. } => "InvalidSignatureException",
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Reads the header; clients differ on the spaces after the commas.
pub fn parse_authorization(value: &str) -> Result<Authorization, SigError> {
    let rest = value.strip_prefix(ALGORITHM).ok_or_else(|| {
        SigError::Incomplete(format!("Authorization header must use {ALGORITHM}"))
    })?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let need = |what: &str| {
        SigError::Incomplete(format!(
            "Authorization header requires '{what}' parameter. Authorization={value}"
        ))
    };
    let credential = credential.ok_or_else(|| need("Credential"))?;
    let signed = signed.ok_or_else(|| need("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| need("Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope[..] else {
        return Err(SigError::Incomplete(format!(
            "Credential should be scoped to a valid region, service and date: {credential}"
        )));
    };
    Ok(Authorization {
        access_key: access_key.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
        signature: signature.to_ascii_lowercase(),
    })
}

/// What of the request the signature covers.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// Every header, names in any case; repeated names appear repeated.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// The canonical request over the headers the client named.
pub fn canonical_request(r: &Request<'_>, signed: &[String]) -> Result<String, SigError> {
    let mut lines = String::new();
    for name in signed {
        let values: Vec<String> = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(SigError::Incomplete(format!(
                "the signed header {name} is not in the request"
            )));
        }
        lines.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    // The body's own hash, always: a client's X-Amz-Content-Sha256 may only repeat it (one
    // that differs, or UNSIGNED-PAYLOAD, would let a captured signature carry another body).
    let payload = hex(&Sha256::digest(r.body));
    if let Some((_, v)) = r
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-content-sha256"))
    {
        if !v.trim().eq_ignore_ascii_case(&payload) {
            return Err(SigError::Incomplete(
                "X-Amz-Content-Sha256 is not the SHA-256 of the body".into(),
            ));
        }
    }
    Ok(format!(
        "{}\n{}\n{}\n{lines}\n{}\n{payload}",
        r.method,
        r.path,
        r.query,
        signed.join(";")
    ))
}

/// The signature of `canonical` for a request dated `amz_date` (`YYYYMMDDTHHMMSSZ`).
pub fn sign(secret: &str, amz_date: &str, region: &str, service: &str, canonical: &str) -> String {
    let day = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex(&hmac(&k_signing, to_sign.as_bytes()))
}

/// `YYYYMMDDTHHMMSSZ` as seconds since the epoch.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Headers every request must have signed.
const REQUIRED_SIGNED: [&str; 3] = ["host", "x-amz-date", "x-amz-target"];

/// Checks `r` signed with `auth` against `secret`, within `skew_secs` of `now` (epoch s).
pub fn verify(
    r: &Request<'_>,
    auth: &Authorization,
    secret: &str,
    now: i64,
    skew_secs: i64,
) -> Result<(), SigError> {
    let amz_date = r
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-date"))
        .map(|(_, v)| v.trim().to_string())
        .ok_or_else(|| SigError::Incomplete("the request has no X-Amz-Date header".into()))?;
    let at = parse_amz_date(&amz_date).ok_or_else(|| {
        SigError::Incomplete(format!("X-Amz-Date {amz_date} is not YYYYMMDDTHHMMSSZ"))
    })?;
    // Unsigned, the operation or the date of a captured request could be changed.
    for must in REQUIRED_SIGNED {
        if !auth.signed_headers.iter().any(|h| h == must) {
            return Err(SigError::Incomplete(format!(
                "SignedHeaders must include {}",
                REQUIRED_SIGNED.join(", ")
            )));
        }
    }
    if !amz_date.starts_with(&auth.date) || auth.service != SERVICE {
        return Err(SigError::Incomplete(format!(
            "Credential should be scoped to the request's date and service {SERVICE}"
        )));
    }
    if (at - now).abs() > skew_secs {
        return Err(SigError::Expired {
            date: amz_date,
            now: format!("{now} s since the epoch"),
            limit: format!("{} min allowed", skew_secs / 60),
        });
    }
    let canonical = canonical_request(r, &auth.signed_headers)?;
    let expected = sign(secret, &amz_date, &auth.region, &auth.service, &canonical);
    let same = expected.len() == auth.signature.len()
        && expected
            .bytes()
            .zip(auth.signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(SigError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn headers(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn the_aws_test_suites_vanilla_requests_sign_as_published() {
        let h = headers(&[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ]);
        let signed = vec!["host".to_string(), "x-amz-date".to_string()];
        for (method, want) in [
            (
                "GET",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "POST",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
        ] {
            let r = Request {
                method,
                path: "/",
                query: "",
                headers: &h,
                body: b"",
            };
            let c = canonical_request(&r, &signed).unwrap();
            assert_eq!(
                sign(SECRET, "20150830T123600Z", "us-east-1", "service", &c),
                want
            );
        }
    }

    fn ecs_request(h: &[(String, String)]) -> Request<'_> {
        Request {
            method: "POST",
            path: "/",
            query: "",
            headers: h,
            body: b"{}",
        }
    }

    fn ecs_headers() -> Vec<(String, String)> {
        headers(&[
            ("Host", "127.0.0.1:8080"),
            ("Content-Type", "application/x-amz-json-1.1"),
            (
                "X-Amz-Target",
                "AmazonEC2ContainerServiceV20141113.ListClusters",
            ),
            ("X-Amz-Date", "20150830T123600Z"),
        ])
    }

    fn auth(signature: &str) -> Authorization {
        parse_authorization(&format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={signature}")).unwrap()
    }

    #[test]
    fn an_ecs_request_verifies_and_any_change_or_a_stale_date_is_refused() {
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let h = ecs_headers();
        let good = "7ebc264d9e687550b51550429b12886c1a40bbc2705d2b541887557d11e99334";
        assert_eq!(
            verify(&ecs_request(&h), &auth(good), SECRET, now, 300),
            Ok(())
        );
        let mut tampered = h.clone();
        tampered[2].1 = "AmazonEC2ContainerServiceV20141113.RunTask".into();
        assert_eq!(
            verify(&ecs_request(&tampered), &auth(good), SECRET, now, 300),
            Err(SigError::Mismatch)
        );
        assert_eq!(
            verify(&ecs_request(&h), &auth(good), "other", now, 300),
            Err(SigError::Mismatch)
        );
        // Another body under the captured signature, with or without a hash header naming
        // the original body.
        let other_body = Request {
            body: b"{\"cluster\":\"x\"}",
            ..ecs_request(&h)
        };
        assert_eq!(
            verify(&other_body, &auth(good), SECRET, now, 300),
            Err(SigError::Mismatch)
        );
        let mut claimed = h.clone();
        claimed.push(("X-Amz-Content-Sha256".into(), hex(&Sha256::digest(b"{}"))));
        let claimed_other = Request {
            body: b"{\"cluster\":\"x\"}",
            ..ecs_request(&claimed)
        };
        let e = verify(&claimed_other, &auth(good), SECRET, now, 300).unwrap_err();
        assert!(e.to_string().contains("X-Amz-Content-Sha256"), "{e}");
        let mut unsigned = claimed.clone();
        unsigned.last_mut().unwrap().1 = "UNSIGNED-PAYLOAD".into();
        assert!(verify(&ecs_request(&unsigned), &auth(good), SECRET, now, 300).is_err());
        // The operation must be signed.
        let loose = parse_authorization("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=00").unwrap();
        let e = verify(&ecs_request(&h), &loose, SECRET, now, 300).unwrap_err();
        assert!(e.to_string().contains("x-amz-target"), "{e}");
        let late = verify(&ecs_request(&h), &auth(good), SECRET, now + 301, 300).unwrap_err();
        assert_eq!(late.exception(), "InvalidSignatureException");
        assert!(
            late.to_string()
                .starts_with("Signature expired: 20150830T123600Z"),
            "{late}"
        );
    }

    #[test]
    fn a_malformed_authorization_names_what_is_missing() {
        let e =
            parse_authorization("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00").unwrap_err();
        assert_eq!(e.exception(), "IncompleteSignatureException");
        assert!(e.to_string().contains("'Credential'"), "{e}");
        assert!(parse_authorization("Basic abc").is_err());
        let a = parse_authorization("AWS4-HMAC-SHA256 Credential=K/20150830/eu-west-1/ecs/aws4_request,SignedHeaders=Host;X-Amz-Date,Signature=AB").unwrap();
        assert_eq!(a.region, "eu-west-1");
        assert_eq!(a.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(a.signature, "ab");
    }

    #[test]
    fn amz_dates_read_as_epoch_seconds() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("20150830T123600"), None);
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
    }
}
