//! `p2pb lan token`: a new token for LAN clients.

use p2pbroker::daemon::server::lan::MIN_TOKEN_CHARS;

/// `p2pb lan` subcommands.
#[derive(clap::Subcommand)]
pub enum LanCommand {
    /// Generate a random token for LAN clients; print it and the
    /// `token_sha256` line to paste into the policy's `[lan]` table.
    Token {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Bytes of randomness in a token: 256 bits, hex-encoded to 64
/// characters (well over the broker's minimum of [`MIN_TOKEN_CHARS`]).
const TOKEN_BYTES: usize = 32;

/// Run a `p2pb lan` command.
pub fn run(cmd: LanCommand) -> anyhow::Result<u8> {
    let LanCommand::Token { json } = cmd;
    let (token, digest) = generate()?;
    if json {
        let v = serde_json::json!({ "token": token, "token_sha256": digest });
        println!("{}", p2pbroker::text::json_line(&v));
    } else {
        println!("token   {token}");
        println!("policy  token_sha256 = [\"{digest}\"]");
        eprintln!(
            "Give the token to the LAN clients (P2PB_TOKEN); put the digest in the policy's [lan] token_sha256 list. The token is not stored anywhere."
        );
    }
    Ok(0)
}

/// A fresh token and its hex sha256 digest.
fn generate() -> anyhow::Result<(String, String)> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("the system gave no random bytes: {e}"))?;
    let token = hex::encode(bytes);
    debug_assert!(token.len() >= MIN_TOKEN_CHARS);
    let digest = hex::encode(p2pbroker::sha256(token.as_bytes()));
    Ok((token, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_distinct_and_match_their_digest() {
        let (a, da) = generate().unwrap();
        let (b, _) = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.len() >= MIN_TOKEN_CHARS);
        assert_eq!(da, hex::encode(p2pbroker::sha256(a.as_bytes())));
    }
}
