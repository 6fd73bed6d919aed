package clientauth

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"sigs.k8s.io/yaml"
)

// Actions a scope entry may list.
const (
	// ActionRead lets a client pull the matching repositories (manifests, blobs, tag lists): ACR's content/read.
	ActionRead = "read"
	// ActionContentRead is ACR's name of ActionRead, accepted as the same.
	ActionContentRead = "content/read"
	// ActionMetadataRead lets a client list the registry's repositories (/v2/_catalog).
	ActionMetadataRead = "metadata/read"
)

// MaxClients is how many client tokens one connected registry takes, as ACR allows.
const MaxClients = 20

// ErrNotBcrypt is the error of a password that is not a bcrypt hash: the Secret must never hold a password in
// clear.
var ErrNotBcrypt = errors.New("password is not a bcrypt hash ($2a$, $2b$ or $2y$, as htpasswd -B writes): store the hash, never the password")

// tokenName is what a client token's name (and its Secret key) may be: ACR's token names, which are also valid
// Secret keys.
var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$`)

// ScopeEntry grants actions on the repositories whose names match one of its patterns.
type ScopeEntry struct {
	// Repositories are path.Match patterns of repository names ("library/app", "team/*").
	Repositories []string `json:"repositories"`
	// Actions are ActionRead (or ActionContentRead) and ActionMetadataRead.
	Actions []string `json:"actions"`
}

// entry is one client token as the Secret holds it, under the token's name.
type entry struct {
	// Password is the bcrypt hash of the token's password.
	Password string `json:"password"`
	// Disabled refuses the token, as an ACR token's disabled status does, without deleting it.
	Disabled bool `json:"disabled,omitempty"`
	// Scope is the token's scope map.
	Scope []ScopeEntry `json:"scope"`
}

// Client is one client token, checked.
type Client struct {
	Name     string
	hash     []byte
	disabled bool
	read     []string // patterns the token may pull
	catalog  bool     // may list the catalog
}

// ParseClient reads the client token called name from its Secret value, a YAML (or JSON) document:
//
//	password: $2y$10$...          # bcrypt hash (htpasswd -nbB name password | cut -d: -f2)
//	disabled: false               # optional
//	scope:
//	  - repositories: [library/app, "team/*"]
//	    actions: [read]
//	  - repositories: ["*"]
//	    actions: [metadata/read]
//
// Unknown fields, unknown actions, bad patterns and a password that is not a bcrypt hash are errors. Errors name
// the token and the field, never the value of the password.
func ParseClient(name string, value []byte) (Client, error) {
	if !tokenName.MatchString(name) {
		return Client{}, fmt.Errorf("client token %q: a name is 1 to 50 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	var e entry
	if err := yaml.UnmarshalStrict(value, &e); err != nil {
		return Client{}, fmt.Errorf("client token %q: %w", name, err)
	}
	if _, err := bcrypt.Cost([]byte(e.Password)); err != nil {
		return Client{}, fmt.Errorf("client token %q: %w", name, ErrNotBcrypt)
	}
	c := Client{Name: name, hash: []byte(e.Password), disabled: e.Disabled}
	if len(e.Scope) == 0 {
		return Client{}, fmt.Errorf("client token %q: scope is empty: list repositories and actions", name)
	}
	for i, s := range e.Scope {
		if len(s.Actions) == 0 {
			return Client{}, fmt.Errorf("client token %q: scope[%d] has no actions", name, i)
		}
		var read bool
		for _, a := range s.Actions {
			switch a {
			case ActionRead, ActionContentRead:
				read = true
			case ActionMetadataRead:
				c.catalog = true
			default:
				return Client{}, fmt.Errorf("client token %q: scope[%d]: action %q is not %s, %s or %s (the registry is read-only)",
					name, i, a, ActionRead, ActionContentRead, ActionMetadataRead)
			}
		}
		if len(s.Repositories) == 0 {
			return Client{}, fmt.Errorf("client token %q: scope[%d] has no repositories", name, i)
		}
		for _, p := range s.Repositories {
			if p == "" || strings.HasPrefix(p, "/") {
				return Client{}, fmt.Errorf("client token %q: scope[%d]: repository pattern %q is empty or starts with '/'", name, i, p)
			}
			if _, err := path.Match(p, ""); err != nil {
				return Client{}, fmt.Errorf("client token %q: scope[%d]: repository pattern %q: %w", name, i, p, err)
			}
			if read && !slices.Contains(c.read, p) {
				c.read = append(c.read, p)
			}
		}
	}
	return c, nil
}

// CanPull reports whether the token may pull repo.
func (c Client) CanPull(repo string) bool {
	for _, p := range c.read {
		if ok, _ := path.Match(p, repo); ok {
			return true
		}
	}
	return false
}

// CanListCatalog reports whether the token may list the catalog.
func (c Client) CanListCatalog() bool { return c.catalog }

// Clients is the set of client tokens, by name.
type Clients map[string]Client

// ParseClients reads every key of the tokens Secret. A key that does not parse is left out (that token is
// refused) and its error returned, joined with the others: one bad token never locks the others out. Beyond
// MaxClients tokens, the names after the first MaxClients in sorted order are left out too.
func ParseClients(data map[string][]byte) (Clients, error) {
	names := make([]string, 0, len(data))
	for n := range data {
		names = append(names, n)
	}
	sort.Strings(names)
	out := Clients{}
	var errs []error
	for _, n := range names {
		c, err := ParseClient(n, data[n])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(out) == MaxClients {
			errs = append(errs, fmt.Errorf("client token %q: left out: a connected registry takes at most %d client tokens", n, MaxClients))
			continue
		}
		out[n] = c
	}
	return out, errors.Join(errs...)
}

// CheckPassword reports whether password is the token's (a bcrypt comparison). It says nothing of a disabled
// token: see Disabled.
func (c Client) CheckPassword(password string) bool {
	return bcrypt.CompareHashAndPassword(c.hash, []byte(password)) == nil
}

// Disabled reports whether the token is disabled.
func (c Client) Disabled() bool { return c.disabled }
