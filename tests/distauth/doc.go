// Package distauth proves the client-token issuer (internal/clientauth) against Distribution's own token
// verification (registry/auth/token of Distribution v3.1.2, the registry the chart runs). It is a module of its
// own so that Distribution's dependencies stay out of the product binary's module.
package distauth
