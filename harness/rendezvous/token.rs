//! The rendezvous token: a secret every shard of a run shares (`--rendezvous-token-file
//! FILE` or `$SOCKCAP_RENDEZVOUS_TOKEN`), proved without sending it. Shard 0 sends each
//! connection a random [`Challenge`]; a shard answers HMAC-SHA256(token, challenge), and
//! shard 0 checks the answer in constant time (`hmac`'s `verify_slice`). The token never
//! leaves this type: no `Debug`, `Display` or `Serialize` shows it.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The environment variable that gives the token when `--rendezvous-token-file` does not.
pub const TOKEN_ENV: &str = "SOCKCAP_RENDEZVOUS_TOKEN";
/// The shortest token accepted, in bytes.
pub const MIN_TOKEN_BYTES: usize = 16;
/// The length of a challenge and of its answer (an HMAC-SHA256 tag), in bytes.
pub const CHALLENGE_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The shared secret of a run's shards.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Why a token was not accepted: a bad input (exit 2). The messages name where the token
/// came from and never its bytes.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("--rendezvous-token-file {path}: cannot read the token: {error}")]
    Unreadable { path: String, error: std::io::Error },
    #[error(
        "{source_name}: the rendezvous token is {len} bytes, fewer than {MIN_TOKEN_BYTES}: write a longer secret, \
         e.g. `head -c 32 /dev/urandom | base64 > FILE` for --rendezvous-token-file FILE"
    )]
    TooShort { source_name: String, len: usize },
}

impl Token {
    /// The token in `path`: its bytes, less one trailing line end.
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let bytes =
            std::fs::read(path).map_err(|error| TokenError::Unreadable { path: path.display().to_string(), error })?;
        Token::new(bytes, format!("--rendezvous-token-file {}", path.display()))
    }

    /// The token given in [`TOKEN_ENV`].
    pub fn from_env_value(value: &str) -> Result<Token, TokenError> {
        Token::new(value.as_bytes().to_vec(), format!("${TOKEN_ENV} (or --rendezvous-token-file)"))
    }

    fn new(mut bytes: Vec<u8>, source_name: String) -> Result<Token, TokenError> {
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        if bytes.len() < MIN_TOKEN_BYTES {
            return Err(TokenError::TooShort { source_name, len: bytes.len() });
        }
        Ok(Token(bytes))
    }

    fn mac(&self, challenge: &Challenge) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(&challenge.0);
        mac
    }

    /// What a shard answers to `challenge`: HMAC-SHA256(token, challenge).
    pub fn answer(&self, challenge: &Challenge) -> [u8; CHALLENGE_BYTES] {
        self.mac(challenge).finalize().into_bytes().into()
    }

    /// Whether `answer` is this token's answer to `challenge`, compared in constant time.
    pub fn verify(&self, challenge: &Challenge, answer: &[u8]) -> bool {
        self.mac(challenge).verify_slice(answer).is_ok()
    }
}

/// Random bytes shard 0 sends each connection, answered with the token's HMAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge(pub [u8; CHALLENGE_BYTES]);

impl Challenge {
    /// A fresh challenge from the kernel's random source (getrandom(2)).
    pub fn random() -> std::io::Result<Challenge> {
        let mut bytes = [0u8; CHALLENGE_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("getrandom: {e}")))?;
        Ok(Challenge(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> Token {
        Token::from_env_value(text).unwrap()
    }

    /// HMAC-SHA256 written out from SHA-256 (RFC 2104), for a key of at most 64 bytes.
    fn reference_hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        let mut block = [0u8; 64];
        block[..key.len()].copy_from_slice(key);
        let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
        let inner = Sha256::digest([pad(0x36), message.to_vec()].concat());
        Sha256::digest([pad(0x5c), inner.to_vec()].concat()).to_vec()
    }

    #[test]
    fn the_answer_is_hmac_sha256_and_only_the_same_token_verifies_it() {
        // The reference against RFC 4231, test case 2.
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(&reference_hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let challenge = Challenge(*b"a challenge of thirty-two bytes!");
        let key = b"the fleet's shared secret";
        assert_eq!(token("the fleet's shared secret").answer(&challenge).to_vec(), reference_hmac(key, &challenge.0));

        let ours = token("a shared secret of the fleet");
        let challenge = Challenge::random().unwrap();
        let answer = ours.answer(&challenge);
        assert!(ours.verify(&challenge, &answer));
        assert!(!token("another secret, not the fleet's").verify(&challenge, &answer));
        assert!(!ours.verify(&Challenge::random().unwrap(), &answer), "an answer holds for its challenge only");
        assert!(!ours.verify(&challenge, &answer[..16]), "a truncated answer");
        assert!(!ours.verify(&challenge, &[]));
        assert_ne!(Challenge::random().unwrap(), challenge);
    }

    #[test]
    fn a_token_file_needs_16_bytes_less_its_line_end() {
        let dir = std::env::temp_dir().join(format!("sockcap-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let ok = Token::from_file(&file("ok", b"0123456789abcdef\n")).unwrap();
        assert_eq!(ok.0, b"0123456789abcdef");
        assert_eq!(Token::from_file(&file("crlf", b"0123456789abcdef\r\n")).unwrap().0, b"0123456789abcdef");
        let short = Token::from_file(&file("short", b"0123456789abcde\n")).unwrap_err().to_string();
        assert!(short.contains("--rendezvous-token-file") && short.contains("15 bytes"), "{short}");
        assert!(!short.contains("0123456789"), "the message shows the token: {short}");
        let empty = Token::from_file(&file("empty", b"")).unwrap_err().to_string();
        assert!(empty.contains("0 bytes"), "{empty}");
        let missing = Token::from_file(&dir.join("missing")).unwrap_err().to_string();
        assert!(missing.contains("--rendezvous-token-file") && missing.contains("cannot read"), "{missing}");
        let env = Token::from_env_value("short").unwrap_err().to_string();
        assert!(env.contains(TOKEN_ENV) && env.contains("--rendezvous-token-file"), "{env}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let shown = format!("{:?}", token("do-not-print-this-secret"));
        assert_eq!(shown, "Token(<redacted>)");
    }
}
