//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka's broker runs them: the
//! credential kept for a user (salt, iterations, StoredKey, ServerKey; never the password) and
//! the server side of the exchange: client-first, server-first, client-final, server-final.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use fjord_metadata::security::{ScramCredential, ScramMechanism};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

fn hmac(mechanism: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::ScramSha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        ScramMechanism::ScramSha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("hmac takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn hash(mechanism: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::ScramSha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::ScramSha512 => Sha512::digest(data).to_vec(),
    }
}

/// The credential for a salted password (AlterUserScramCredentials sends the salted password,
/// never the password): StoredKey = H(HMAC(salted, "Client Key")), ServerKey = HMAC(salted,
/// "Server Key").
pub fn credential(mechanism: ScramMechanism, salt: &[u8], salted_password: &[u8], iterations: i32) -> ScramCredential {
    let client_key = hmac(mechanism, salted_password, b"Client Key");
    ScramCredential {
        salt: salt.to_vec(),
        stored_key: hash(mechanism, &client_key),
        server_key: hmac(mechanism, salted_password, b"Server Key"),
        iterations,
    }
}

/// Hi(password, salt, i) of RFC 5802 (PBKDF2 with HMAC); used by tests and to make credentials
/// from a password.
pub fn salted_password(mechanism: ScramMechanism, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(mechanism, password, &block);
    let mut out = u.clone();
    for _ in 1..iterations {
        u = hmac(mechanism, password, &u);
        out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// Why an exchange failed: the message goes to the client (Kafka's wording where it has one).
#[derive(Debug, PartialEq, Eq)]
pub struct ScramError(pub String);

fn err(message: impl Into<String>) -> ScramError {
    ScramError(message.into())
}

/// The server after client-first, waiting for client-final.
#[derive(Debug)]
pub struct ServerFirst {
    pub mechanism: ScramMechanism,
    pub user: String,
    credential: ScramCredential,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    gs2_header: String,
}

/// Parses one `k=v` attribute of a SCRAM message.
fn attribute(part: Option<&str>, key: char) -> Result<&str, ScramError> {
    part.and_then(|p| p.strip_prefix(key)?.strip_prefix('='))
        .ok_or_else(|| err(format!("invalid scram message: expected attribute {key}")))
}

/// SCRAM's `saslname` decoding (`=2C` is `,`, `=3D` is `=`).
fn decode_name(raw: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(err("invalid scram message: bad username encoding")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses client-first: returns the user name (to look up the credential) and the parsed parts.
pub fn parse_client_first(message: &[u8]) -> Result<(String, String, String, String), ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| err("invalid scram message: not utf-8"))?;
    // gs2-header: cbind-flag "," [authzid] ","
    let mut split = text.splitn(3, ',');
    let flag = split.next().unwrap_or_default();
    let authzid = split
        .next()
        .ok_or_else(|| err("invalid scram message: no gs2 header"))?;
    let bare = split
        .next()
        .ok_or_else(|| err("invalid scram message: no gs2 header"))?;
    if flag != "n" && flag != "y" {
        return Err(err("channel binding is not supported"));
    }
    let gs2_header = format!("{flag},{authzid},");
    let mut parts = bare.split(',');
    let user = decode_name(attribute(parts.next(), 'n')?)?;
    let nonce = attribute(parts.next(), 'r')?.to_string();
    if user.is_empty() || nonce.is_empty() {
        return Err(err("invalid scram message: empty user or nonce"));
    }
    if !authzid.is_empty() && decode_name(authzid.strip_prefix("a=").unwrap_or(authzid))? != user {
        return Err(err("authorization id does not match the user name"));
    }
    Ok((user, nonce, bare.to_string(), gs2_header))
}

impl ServerFirst {
    /// Starts the exchange for `user` with its stored credential; the reply is server-first.
    pub fn new(
        mechanism: ScramMechanism,
        user: String,
        client_nonce: &str,
        client_first_bare: String,
        gs2_header: String,
        credential: ScramCredential,
    ) -> (ServerFirst, Vec<u8>) {
        let server_nonce: [u8; 18] = rand::random();
        let nonce = format!("{client_nonce}{}", BASE64.encode(server_nonce));
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        (
            ServerFirst {
                mechanism,
                user,
                credential,
                client_first_bare,
                server_first,
                nonce,
                gs2_header,
            },
            reply,
        )
    }

    /// Checks client-final's proof; on success the reply is server-final (`v=...`).
    pub fn finish(self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| err("invalid scram message: not utf-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| err("invalid scram message: no proof"))?;
        let mut parts = without_proof.split(',');
        let binding = attribute(parts.next(), 'c')?;
        let nonce = attribute(parts.next(), 'r')?;
        if BASE64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(err("invalid channel binding"));
        }
        // Kafka's ScramSaslServer checks only that the nonce ends with the combined nonce it
        // sent: librdkafka before 2.1 repeats its own nonce in front (client + client + server).
        if !nonce.ends_with(&self.nonce) {
            return Err(err("Invalid client nonce in the final client message."));
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| err("invalid scram message: bad proof"))?;
        let auth_message = format!("{},{},{}", self.client_first_bare, self.server_first, without_proof);
        let client_signature = hmac(self.mechanism, &self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(err("Authentication failed: Invalid user credentials"));
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
        let stored_key = hash(self.mechanism, &client_key);
        if !bool::from(stored_key.ct_eq(&self.credential.stored_key)) {
            return Err(err("Authentication failed: Invalid user credentials"));
        }
        let server_signature = hmac(self.mechanism, &self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example exchange (user "user", password "pencil").
    #[test]
    fn rfc7677_example() {
        let m = ScramMechanism::ScramSha256;
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let salted = salted_password(m, b"pencil", &salt, 4096);
        let cred = credential(m, &salt, &salted, 4096);
        let (user, cnonce, bare, gs2) = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").expect("first");
        assert_eq!(user, "user");
        let mut first = ServerFirst::new(m, user, &cnonce, bare, gs2, cred).0;
        // Replace the random server nonce with the RFC's to reuse its proof.
        first.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        first.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", first.nonce);
        let final_msg = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let reply = first.finish(final_msg.as_bytes()).expect("proof accepted");
        assert_eq!(reply, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn wrong_proof_and_bad_messages_are_refused() {
        let m = ScramMechanism::ScramSha512;
        let cred = credential(m, b"salt", &salted_password(m, b"right", b"salt", 4096), 4096);
        let (user, cnonce, bare, gs2) = parse_client_first(b"n,,n=a=3Db,r=abc").expect("first");
        assert_eq!(user, "a=b");
        let (first, _) = ServerFirst::new(m, user, &cnonce, bare, gs2, cred);
        let forged = format!("c=biws,r={},p={}", first.nonce, BASE64.encode([0u8; 64]));
        assert!(first.finish(forged.as_bytes()).is_err());
        for junk in [
            &b""[..],
            b"\xff\xfe",
            b"p,,n=x,r=y",
            b"n,,r=y",
            b"n,,n=x",
            b"n,,n=x=,r=y",
        ] {
            assert!(parse_client_first(junk).is_err(), "{junk:?}");
        }
    }
}
