// Package clientauth is the connected registry's client-token issuer: the token server Distribution's
// auth.token names as its realm. It plays the part of ACR's client tokens and scope maps for the clients of one
// connected registry (nodes pulling through kubelet's imagePullSecrets, a child connected registry).
//
// A client token is a name, a bcrypt hash of its password and a scope: repository name patterns with actions.
// The tokens live in one Secret, one key per token (see ParseClient); Watch follows that Secret through the API,
// so a rotated or revoked password takes effect within seconds, without a restart.
//
// The issuer answers Docker's token protocol (GET with Basic auth, and the OAuth2 password grant by POST that
// containerd tries first) with short-lived ES256 JSON Web Tokens that Distribution verifies with the public keys
// of a JWKS file (auth.token.jwks), matched by the kid header. It grants:
//
//   - repository:<name>:pull when a scope entry with the read action has a pattern that matches <name> with
//     path.Match semantics: '*' matches any run of characters except '/', '?' one character except '/',
//     '[...]' a class; so "library/*" matches "library/app" but not "library/a/b", and "*" matches only
//     single-segment names. Push, delete and every other action are never granted: the registry is read-only.
//   - registry:catalog:* (the /v2/_catalog listing) only when a scope entry has the metadata/read action.
//     Distribution does not filter the listing by scope: it names every cached repository.
//
// Everything else asked is dropped, as the token specification says; Distribution then refuses the request.
//
// Security: passwords are compared with bcrypt, and an unknown name costs a bcrypt comparison too, so timing
// does not tell names apart; failed attempts spend a token bucket per client IP and one per name, and while
// either is empty the issuer answers 429 without checking; every failure is logged with the name and the
// client's address, never the password. The exp claim is set Leeway before the moment the token should stop
// working, so Distribution (which accepts a token up to Leeway after exp) refuses it exactly Lifetime after
// issue: the bound on how long a revoked password's tokens keep working.
package clientauth
