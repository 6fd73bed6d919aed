// Package acrparent is a TEST STAND-IN for Azure Container Registry as the parent of a connected registry. It
// is for tests and benchmarks only; nothing in production uses it.
//
// It runs a real Distribution v3.1.2 registry process (the binary ci/tools.sh builds) and, in this process, the
// two things ACR puts around its registry API:
//
//   - a front on the parent's public address (TLS): /oauth2/token is served by a token issuer, every other
//     request is passed unchanged (Authorization included) to the Distribution process on a loopback port. The
//     front checks no credentials and no tokens: Distribution verifies every token itself (auth.token).
//   - a storage host on another host name (TLS; localhost by default, beside an API on 127.0.0.1), standing in
//     for Azure Blob Storage: Distribution answers blob GETs with 307 to it (its redirect storage middleware),
//     and the front adds a signed, expiring query to that Location (?se=<unix>&sig=<hex>, an HMAC-SHA256 like
//     an Azure SAS). The storage host refuses unsigned, tampered and expired URLs (403) and any request that
//     carries an Authorization header (400), and serves the blob's bytes from Distribution's storage
//     directory (Content-Length, Range).
//
// What it emulates, as a client of ACR sees it:
//
//   - GET /v2/ without a token: 401 with WWW-Authenticate: Bearer realm="https://<host:port>/oauth2/token",
//     service="<host:port>". The realm is on the same host:port as the registry API, as ACR's is.
//   - GET /oauth2/token?service=…&scope=…(repeated)&account=… with the token's name and password by Basic auth:
//     {"token","access_token","expires_in","issued_at"}, an ES256-signed JWT that grants only the repositories
//     and actions the account is allowed (pull, and push for accounts that may push), and expires. A wrong
//     name or password gets 401 there.
//   - Tokens are scoped: a token for repository A is refused for B (Distribution answers 401 insufficient_scope).
//   - Tokens expire: after Options.TokenLifetime Distribution refuses them (401 invalid_token) and a client must
//     fetch a new one.
//   - Blob bytes come from another host through a signed, expiring redirect; that host must never see the
//     registry's credentials.
//   - The connection string of `az acr connected-registry get-settings` (Parent.ConnectionString).
//
// What it does not emulate: ACR's OAuth2 POST flows (refresh tokens, /oauth2/exchange, AAD), anonymous pull of a
// whole registry (Options.AnonymousPull opens listed repositories only),
// repository-scoped tokens beyond pull and push (no metadata_read, delete or content/write distinctions),
// ACR's error bodies and throttling, dedicated data endpoints (<registry>.<region>.data.azurecr.io: the test
// parent has one API address), connected-registry management APIs, and geo-replication.
// HEAD requests for blobs are redirected too (that is what Distribution's redirect middleware does; ACR may
// answer them itself). Manifests and tags are served by the registry API, as ACR serves them.
//
// Counters: every request to the registry API (method, path, Authorization scheme, status, bytes), every token
// request (account, scopes asked and granted, status) and every storage request (path, digest, bytes, whether
// an Authorization header arrived) is recorded (Parent.Log), so tests can assert, for example, that each blob
// was fetched once from the storage host and that no credential reached it.
package acrparent
