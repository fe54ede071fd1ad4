//! Certificates made at test time (rcgen, ring): a CA, a server certificate for `localhost`
//! and 127.0.0.1, a client certificate from the same CA, and a second CA nobody trusts. No
//! runtime of its own, so the smol and async-std tests include it too.

#![allow(dead_code, unreachable_pub)]

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM strings of a small PKI.
pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
    /// A CA that signed nothing here and that nobody trusts.
    pub other_ca: String,
    /// A client certificate from `other_ca`.
    pub rogue_client_cert: String,
    pub rogue_client_key: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A fresh PKI.
pub fn pki() -> Pki {
    pki_with_clients(&[]).0
}

/// A fresh PKI, and for each of `names` a client certificate and key (PEM) from its CA whose
/// Common Name is that name.
pub fn pki_with_clients(names: &[&str]) -> (Pki, Vec<(String, String)>) {
    let ca = ca("mqtt-streaming test CA");
    let named = names
        .iter()
        .map(|name| leaf(&ca, &[name], ExtendedKeyUsagePurpose::ClientAuth))
        .collect();
    let pki = pki_of(&ca);
    (pki, named)
}

/// The PKI around `ca`: a server certificate and a client certificate from it, and a rogue
/// client certificate from a second, untrusted CA.
fn pki_of(ca: &CertifiedIssuer<'static, KeyPair>) -> Pki {
    let other = ca_other();
    let (server_cert, server_key) = leaf(
        ca,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(ca, &["client"], ExtendedKeyUsagePurpose::ClientAuth);
    let (rogue_client_cert, rogue_client_key) =
        leaf(&other, &["rogue"], ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: ca.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
        other_ca: other.pem(),
        rogue_client_cert,
        rogue_client_key,
    }
}

fn ca_other() -> CertifiedIssuer<'static, KeyPair> {
    ca("untrusted CA")
}

/// A fresh PKI, two client certificates from its CA (PEM certificate and key: one for
/// `good`, one for `revoked`, their Common Names) and a CRL of the CA (PEM) that revokes the
/// second and is valid until 2999.
pub fn pki_with_revoked(
    good: &str,
    revoked: &str,
) -> (Pki, (String, String), (String, String), String) {
    let ca = ca("mqtt-streaming test CA");
    let with_serial = |name: &str, serial: u64| {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let good = with_serial(good, 1001);
    let revoked = with_serial(revoked, 1002);
    let crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2020, 1, 1),
        next_update: rcgen::date_time_ymd(2999, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from(1002u64),
            revocation_time: rcgen::date_time_ymd(2020, 1, 1),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&ca)
    .unwrap()
    .pem()
    .unwrap();
    let pki = pki_of(&ca);
    (pki, good, revoked, crl)
}
