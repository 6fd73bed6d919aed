package parentgate

import (
	"errors"
	"strings"
)

// challenge is one challenge of a WWW-Authenticate header (RFC 9110 section 11.6.1): a scheme and its
// parameters.
type challenge struct {
	scheme string
	params []param
}

type param struct{ key, value string }

func (c challenge) param(key string) (string, bool) {
	for _, p := range c.params {
		if strings.EqualFold(p.key, key) {
			return p.value, true
		}
	}
	return "", false
}

func (c *challenge) set(key, value string) {
	for i, p := range c.params {
		if strings.EqualFold(p.key, key) {
			c.params[i].value = value
			return
		}
	}
	c.params = append(c.params, param{key, value})
}

var errChallenge = errors.New("not a WWW-Authenticate header the gate understands")

// parseChallenges reads the challenges of one WWW-Authenticate value: `Bearer realm="…",service="…"`, several of
// them separated by commas. Challenges with a token68 instead of parameters are not understood.
func parseChallenges(s string) ([]challenge, error) {
	var cs []challenge
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
			return nil, errChallenge
		}
		c := challenge{scheme: scheme}
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
				return nil, errChallenge
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
				return nil, errChallenge
			}
			c.params = append(c.params, param{key, value})
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

// formatChallenges writes challenges back as one header value, every parameter quoted.
func formatChallenges(cs []challenge) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.scheme)
		for j, p := range c.params {
			if j == 0 {
				b.WriteByte(' ')
			} else {
				b.WriteByte(',')
			}
			b.WriteString(p.key)
			b.WriteString(`="`)
			b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(p.value))
			b.WriteByte('"')
		}
	}
	return b.String()
}
