// Package registryapi speaks the parts of the OCI distribution API that the parent gate, the preflight check and
// the pre-sync all need: the challenges of a WWW-Authenticate header (RFC 9110 section 11.6.1), as
// `Bearer realm="https://…/token",service="…"`, which realms credentials may go to (RealmURL), the message of an
// error answer, and a client's credentials for Basic and bearer-token registries (Credentials).
package registryapi

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Challenge is one challenge: a scheme and its parameters, in order.
type Challenge struct {
	Scheme string
	Params []Param
}

// Param is a parameter of a challenge.
type Param struct{ Key, Value string }

// Param returns the value of the parameter key (case-insensitive).
func (c Challenge) Param(key string) (string, bool) {
	for _, p := range c.Params {
		if strings.EqualFold(p.Key, key) {
			return p.Value, true
		}
	}
	return "", false
}

// Set sets the parameter key, keeping its place when it exists.
func (c *Challenge) Set(key, value string) {
	for i, p := range c.Params {
		if strings.EqualFold(p.Key, key) {
			c.Params[i].Value = value
			return
		}
	}
	c.Params = append(c.Params, Param{key, value})
}

// ErrSyntax is returned for a header value that is not a list of challenges with parameters.
var ErrSyntax = errors.New("not a WWW-Authenticate value of challenges with parameters")

// ParseChallenges reads the challenges of one WWW-Authenticate value: `Bearer realm="…",service="…"`, several of
// them separated by commas. Challenges with a token68 instead of parameters are not understood.
func ParseChallenges(s string) ([]Challenge, error) {
	var cs []Challenge
	i := 0
	skip := func(set string) {
		for i < len(s) && strings.IndexByte(set, s[i]) >= 0 {
			i++
		}
	}
	for {
		skip(" \t,")
		if i >= len(s) {
			return cs, nil
		}
		scheme := readToken(s, &i)
		if scheme == "" {
			return nil, ErrSyntax
		}
		c := Challenge{Scheme: scheme}
		for {
			skip(" \t")
			for i < len(s) && s[i] == ',' {
				i++
				skip(" \t")
			}
			if i >= len(s) {
				break
			}
			start := i
			key := readToken(s, &i)
			if key == "" {
				return nil, ErrSyntax
			}
			skip(" \t")
			if i >= len(s) || s[i] != '=' {
				i = start // the next challenge's scheme
				break
			}
			i++
			skip(" \t")
			value, ok := readValue(s, &i)
			if !ok {
				return nil, ErrSyntax
			}
			c.Params = append(c.Params, Param{key, value})
		}
		cs = append(cs, c)
	}
}

// isTokenChar tells the characters of an RFC 9110 token.
func isTokenChar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func readToken(s string, i *int) string {
	start := *i
	for *i < len(s) && isTokenChar(s[*i]) {
		*i++
	}
	return s[start:*i]
}

// readValue reads a token or a quoted string.
func readValue(s string, i *int) (string, bool) {
	if *i >= len(s) || s[*i] != '"' {
		// Strictly a token; some servers send a URL unquoted, so anything up to a comma or a space.
		start := *i
		for *i < len(s) && s[*i] != ',' && s[*i] != ' ' && s[*i] != '\t' && s[*i] != '"' {
			*i++
		}
		return s[start:*i], *i > start
	}
	var b strings.Builder
	for *i++; *i < len(s); *i++ {
		switch s[*i] {
		case '\\':
			*i++
			if *i >= len(s) {
				return "", false
			}
			b.WriteByte(s[*i])
		case '"':
			*i++
			return b.String(), true
		default:
			b.WriteByte(s[*i])
		}
	}
	return "", false
}

// FormatChallenges writes challenges back as one header value, every parameter quoted.
func FormatChallenges(cs []Challenge) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.Scheme)
		for j, p := range c.Params {
			if j == 0 {
				b.WriteByte(' ')
			} else {
				b.WriteByte(',')
			}
			b.WriteString(p.Key)
			b.WriteString(`="`)
			b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(p.Value))
			b.WriteByte('"')
		}
	}
	return b.String()
}

// RealmURL checks the realm of a Bearer challenge of registry before any credentials go there: an absolute https
// URL (http only when the registry itself is plain http), without user information or fragment.
func RealmURL(realm string, registry *url.URL) (*url.URL, error) {
	u, err := url.Parse(realm)
	if err != nil {
		return nil, fmt.Errorf("realm %q is not a URL: %w", realm, err)
	}
	if u.Host == "" || u.User != nil || u.Fragment != "" || (u.Scheme != "https" && (u.Scheme != "http" || registry.Scheme != "http")) {
		return nil, fmt.Errorf("realm %q is not an https URL of a token endpoint", realm)
	}
	return u, nil
}
