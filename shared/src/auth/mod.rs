//! Who is calling: signed access tokens, scopes, and local password sign-in.

pub mod oidc;
mod passwords;
mod tokens;

pub use passwords::{CheckSlot, CheckersBusy, PasswordChecker, hash_password, verify_password};
pub use tokens::{
    AuthError, IssuedToken, KeyError, PartGrant, Principal, RsaPrivateKey, RsaPublicKey, Scope,
    TokenKeys, TokenService, generate_rsa_pems,
};
