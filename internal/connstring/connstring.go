// Package connstring parses the connection string of an Azure connected registry, as
// `az acr connected-registry get-settings` prints it:
//
//	ConnectedRegistryName=…;SyncTokenName=…;SyncTokenPassword=…;ParentGatewayEndpoint=…;ParentEndpointProtocol=https
//
// Every binary of the project parses it here. Errors are plain sentences that name the field and the fix, and
// never hold the value of SyncTokenPassword.
package connstring

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/connected-registry/connected-registry/internal/english"
)

// Field names, in the order `az acr connected-registry get-settings` prints them.
const (
	FieldConnectedRegistryName  = "ConnectedRegistryName"
	FieldSyncTokenName          = "SyncTokenName"
	FieldSyncTokenPassword      = "SyncTokenPassword"
	FieldParentGatewayEndpoint  = "ParentGatewayEndpoint"
	FieldParentEndpointProtocol = "ParentEndpointProtocol"
)

// Fields lists every field of a connection string in canonical order. All of them are required.
var Fields = []string{
	FieldConnectedRegistryName,
	FieldSyncTokenName,
	FieldSyncTokenPassword,
	FieldParentGatewayEndpoint,
	FieldParentEndpointProtocol,
}

// MaxLength caps the input: a real connection string is a few hundred bytes.
const MaxLength = 4096

// Redacted replaces the password in String and GoString.
const Redacted = "<redacted>"

// Sentinel errors, for errors.Is. Parse returns an *Error wrapping one of them, whose message names the field
// and the fix.
var (
	ErrEmpty             = errors.New("connection string is empty")
	ErrTooLong           = errors.New("connection string is too long")
	ErrTypographicQuotes = errors.New("connection string contains typographic quotes copied from a document; use plain ASCII quotes or none")
	ErrWhitespace        = errors.New("connection string contains whitespace")
	ErrQuoted            = errors.New("connection string is wrapped in quotes")
	ErrInvalidCharacter  = errors.New("connection string contains a character that is not printable ASCII")
	ErrMalformedField    = errors.New("connection string field is not written as Name=value")
	ErrUnknownField      = errors.New("connection string has an unknown field")
	ErrDuplicateField    = errors.New("connection string has a field twice")
	ErrMissingField      = errors.New("connection string lacks a field")
	ErrEmptyValue        = errors.New("connection string field is empty")
	ErrProtocol          = errors.New("connection string protocol is not http or https")
	ErrEndpoint          = errors.New("connection string endpoint is not a host with an optional port")
)

// Error is the error Parse returns. Its message is a sentence for users; Err is one of the sentinels above.
type Error struct {
	// Field is the canonical name of the offending field, empty when the error concerns the whole string.
	Field string
	// Err is the sentinel describing the kind of problem.
	Err error
	msg string
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

func newError(field string, kind error, format string, args ...any) *Error {
	return &Error{Field: field, Err: kind, msg: fmt.Sprintf(format, args...)}
}

// ConnectionString holds the fields of a parsed connection string. Its String and GoString methods redact
// SyncTokenPassword, so printing it with %v, %+v or %#v is safe.
type ConnectionString struct {
	ConnectedRegistryName string
	SyncTokenName         string
	SyncTokenPassword     string
	// ParentGatewayEndpoint is a host with an optional port, without scheme or path.
	ParentGatewayEndpoint string
	// ParentEndpointProtocol is "https" or "http", lower-cased.
	ParentEndpointProtocol string
}

// typographicQuotes are the quotes word processors and web pages substitute for ASCII quotes.
const typographicQuotes = "“”‘’„‚‟‛«»‹›＂＇″"

const getSettingsHint = "copy the whole output of az acr connected-registry get-settings again"

// Parse parses a connection string. It accepts exactly the five fields of Fields, each once, in any order,
// separated by semicolons (one trailing semicolon is tolerated), and rejects what copying from documents and
// terminals typically adds: surrounding whitespace or newlines, typographic quotes, invisible characters.
func Parse(s string) (ConnectionString, error) {
	cs, err := parse(s)
	if err != nil {
		return ConnectionString{}, err
	}
	return cs, nil
}

func parse(s string) (ConnectionString, error) {
	var cs ConnectionString
	if s == "" {
		return cs, newError("", ErrEmpty, "connection string is empty; set it to the output of az acr connected-registry get-settings")
	}
	if len(s) > MaxLength {
		return cs, newError("", ErrTooLong, "connection string is %d bytes long, more than the %d a connection string can be; %s", len(s), MaxLength, getSettingsHint)
	}
	if i := strings.IndexAny(s, typographicQuotes); i >= 0 {
		if f := fieldAt(s, i); f != "" {
			return cs, newError(f, ErrTypographicQuotes, "connection string field %s contains typographic quotes copied from a document; use plain ASCII quotes or none", f)
		}
		return cs, newError("", ErrTypographicQuotes, "%s", ErrTypographicQuotes.Error())
	}
	if err := checkEdges(s); err != nil {
		return cs, err
	}
	if err := checkCharacters(s); err != nil {
		return cs, err
	}

	body := strings.TrimSuffix(s, ";")
	segments := strings.Split(body, ";")
	seen := make(map[string]bool, len(Fields))
	for i, seg := range segments {
		pos := i + 1
		if seg == "" {
			return cs, newError("", ErrMalformedField, "connection string has an empty field %d (two semicolons in a row); remove the extra semicolon", pos)
		}
		key, value, ok := strings.Cut(seg, "=")
		if !ok {
			// Never echo seg: it may be a piece of a password that held a semicolon.
			return cs, newError("", ErrMalformedField, "connection string field %d has no '='; write Name=value pairs separated by semicolons", pos)
		}
		if key == "" {
			return cs, newError("", ErrMalformedField, "connection string field %d has no name before '='; write Name=value pairs separated by semicolons", pos)
		}
		canonical, known := canonicalField(key)
		if !known {
			if i > 0 && strings.HasPrefix(segments[i-1], FieldSyncTokenPassword+"=") {
				// Right after the password, a name may be the password's own tail past a ';': never echo it.
				return cs, newError("", ErrUnknownField, "connection string field %d, after %s, has an unknown name; if the password holds a ';', "+
					"generate another with az acr connected-registry get-settings --generate-password 1; the fields are %s", pos, FieldSyncTokenPassword, english.List(Fields))
			}
			return cs, unknownField(key, pos)
		}
		if canonical != key {
			return cs, newError(canonical, ErrUnknownField, "connection string field %q is misspelled; write %s", key, canonical)
		}
		if seen[key] {
			return cs, newError(key, ErrDuplicateField, "connection string has %s twice; keep one", key)
		}
		seen[key] = true
		if value == "" {
			return cs, newError(key, ErrEmptyValue, "connection string field %s is empty; give it a value or %s", key, getSettingsHint)
		}
		switch key {
		case FieldConnectedRegistryName:
			cs.ConnectedRegistryName = value
		case FieldSyncTokenName:
			cs.SyncTokenName = value
		case FieldSyncTokenPassword:
			cs.SyncTokenPassword = value
		case FieldParentGatewayEndpoint:
			cs.ParentGatewayEndpoint = value
		case FieldParentEndpointProtocol:
			cs.ParentEndpointProtocol = value
		}
	}

	var missing []string
	for _, f := range Fields {
		if !seen[f] {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return cs, newError(missing[0], ErrMissingField, "connection string lacks %s; add it or %s", english.List(missing), getSettingsHint)
	}

	protocol := strings.ToLower(cs.ParentEndpointProtocol)
	if protocol != "https" && protocol != "http" {
		return cs, newError(FieldParentEndpointProtocol, ErrProtocol, "connection string field ParentEndpointProtocol is %q; use https (or http for a parent without TLS)", cs.ParentEndpointProtocol)
	}
	cs.ParentEndpointProtocol = protocol
	if err := checkEndpoint(cs.ParentGatewayEndpoint); err != nil {
		return cs, err
	}
	return cs, nil
}

// checkEdges rejects whitespace around the whole string and quotes wrapping it.
func checkEdges(s string) error {
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	switch {
	case first == '\n' || first == '\r':
		return newError("", ErrWhitespace, "connection string starts with a newline (common when copied); remove it")
	case last == '\n' || last == '\r':
		return newError("", ErrWhitespace, "connection string ends with a newline (common when copied); remove it")
	case unicode.IsSpace(first):
		return newError("", ErrWhitespace, "connection string starts with whitespace (common when copied); remove it")
	case unicode.IsSpace(last):
		return newError("", ErrWhitespace, "connection string ends with whitespace (common when copied); remove it")
	case len(s) >= 2 && (first == '"' || first == '\'') && last == first:
		return newError("", ErrQuoted, "connection string is wrapped in quotes; remove them (quoting for the shell or JSON is not part of the value)")
	}
	return nil
}

// checkCharacters requires printable ASCII without spaces, naming the field that holds anything else.
func checkCharacters(s string) error {
	for i, r := range s {
		if r > ' ' && r < utf8.RuneSelf && r != 0x7f {
			continue
		}
		where := "at position " + strconv.Itoa(utf8.RuneCountInString(s[:i])+1)
		field := fieldAt(s, i)
		switch {
		case i == 0:
			where = "at the start"
		case field != "":
			where = "in the value of " + field
		case strings.Contains(s, ";"):
			where = "in field " + strconv.Itoa(strings.Count(s[:i], ";")+1)
		}
		if unicode.IsSpace(r) {
			return newError(field, ErrWhitespace, "connection string contains whitespace (%s) %s; remove it", runeName(r), where)
		}
		return newError(field, ErrInvalidCharacter, "connection string contains the invisible or non-ASCII character %s %s; retype it or %s", runeName(r), where, getSettingsHint)
	}
	return nil
}

func runeName(r rune) string {
	switch r {
	case ' ':
		return "a space"
	case '\t':
		return "a tab"
	case '\n', '\r':
		return "a line break"
	case utf8.RuneError:
		return "an invalid UTF-8 byte"
	}
	return fmt.Sprintf("U+%04X", r)
}

// fieldAt returns the canonical name of the known field whose value holds byte offset i of s, or "".
func fieldAt(s string, i int) string {
	start := strings.LastIndexByte(s[:i], ';') + 1
	seg := s[start:]
	if end := strings.IndexByte(seg, ';'); end >= 0 {
		seg = seg[:end]
	}
	key, _, ok := strings.Cut(seg, "=")
	if !ok || i < start+len(key)+1 {
		return ""
	}
	if f, known := canonicalField(key); known {
		return f
	}
	return ""
}

func canonicalField(key string) (string, bool) {
	for _, f := range Fields {
		if strings.EqualFold(f, key) {
			return f, true
		}
	}
	return "", false
}

func unknownField(key string, pos int) error {
	list := english.List(Fields)
	if isIdentifier(key) {
		return newError("", ErrUnknownField, "connection string has an unknown field %q; the fields are %s", key, list)
	}
	// A name that is not a plain word may be part of a password: do not echo it.
	return newError("", ErrUnknownField, "connection string field %d has an unknown name; the fields are %s", pos, list)
}

func isIdentifier(s string) bool {
	if len(s) > 40 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// checkEndpoint requires host[:port], where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
func checkEndpoint(ep string) error {
	const f = FieldParentGatewayEndpoint
	const example = "like myregistry.eastus.data.azurecr.io or 192.168.0.10:8080"
	if strings.Contains(ep, "@") {
		// May hold user information; do not echo it.
		return newError(f, ErrEndpoint, "connection string field %s holds user information ('@'); give only the host name and an optional port, %s", f, example)
	}
	if scheme, _, ok := strings.Cut(ep, "://"); ok {
		return newError(f, ErrEndpoint, "connection string field %s %q includes a scheme; remove %q and set ParentEndpointProtocol instead", f, ep, scheme+"://")
	}
	if strings.ContainsAny(ep, "/?#") {
		return newError(f, ErrEndpoint, "connection string field %s %q includes a path; give only the host name and an optional port, %s", f, ep, example)
	}
	host, port := ep, ""
	switch {
	case strings.HasPrefix(ep, "["):
		end := strings.IndexByte(ep, ']')
		if end < 0 {
			return newError(f, ErrEndpoint, "connection string field %s %q opens '[' without closing it; write an IPv6 address as [2001:db8::1] or [2001:db8::1]:443", f, ep)
		}
		host, port = ep[1:end], ep[end+1:]
		if port != "" {
			if port[0] != ':' {
				return newError(f, ErrEndpoint, "connection string field %s %q has text after ']'; write [2001:db8::1] or [2001:db8::1]:443", f, ep)
			}
			port = port[1:]
		}
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return newError(f, ErrEndpoint, "connection string field %s %q has no IPv6 address in brackets; write [2001:db8::1] or [2001:db8::1]:443", f, ep)
		}
	case strings.Count(ep, ":") > 1:
		return newError(f, ErrEndpoint, "connection string field %s %q looks like an IPv6 address; write it in brackets, like [2001:db8::1]:443", f, ep)
	case strings.Contains(ep, ":"):
		host, port, _ = strings.Cut(ep, ":")
		if host == "" {
			return newError(f, ErrEndpoint, "connection string field %s %q has a port but no host; %s", f, ep, example)
		}
		if !isHostName(host) {
			return newError(f, ErrEndpoint, "connection string field %s %q has an invalid host name; %s", f, ep, example)
		}
	default:
		if !isHostName(host) {
			return newError(f, ErrEndpoint, "connection string field %s %q is not a valid host name; %s", f, ep, example)
		}
	}
	if strings.HasPrefix(ep, "[") || strings.Contains(ep, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return newError(f, ErrEndpoint, "connection string field %s %q has an invalid port; use a number from 1 to 65535 or leave the port out", f, ep)
		}
	}
	return nil
}

// isHostName accepts a DNS name (letters, digits, hyphens; labels of 1 to 63 characters) or an IPv4 address.
func isHostName(h string) bool {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Is4()
	}
	if len(h) > 253 {
		return false
	}
	labels := strings.Split(strings.TrimSuffix(h, "."), ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	// A name made only of digits and dots is a mistyped IPv4 address, not a host name.
	return strings.Trim(h, "0123456789.") != ""
}

// acrDataSuffixes maps the data-endpoint domain of each Azure cloud to its login-server domain.
var acrDataSuffixes = []struct{ data, login string }{
	{".data.azurecr.io", ".azurecr.io"},
	{".data.azurecr.cn", ".azurecr.cn"},
	{".data.azurecr.us", ".azurecr.us"},
}

// ParentHost returns the host[:port] of the parent registry. An ACR data endpoint
// `<name>.<region>.data.azurecr.io` maps to its login server `<name>.azurecr.io` (matched without regard to
// case, returned in lower case), because the registry API is served by the login server.
func (c ConnectionString) ParentHost() string {
	host, port := c.ParentGatewayEndpoint, ""
	if h, p, err := net.SplitHostPort(host); err == nil && !strings.HasPrefix(host, "[") {
		host, port = h, p
	}
	lower := strings.ToLower(host)
	for _, s := range acrDataSuffixes {
		rest, ok := strings.CutSuffix(lower, s.data)
		if !ok {
			continue
		}
		name, region, ok := strings.Cut(rest, ".")
		if !ok || name == "" || region == "" || strings.Contains(region, ".") {
			continue
		}
		host = name + s.login
		if port != "" {
			return net.JoinHostPort(host, port)
		}
		return host
	}
	return c.ParentGatewayEndpoint
}

// ParentURL returns `<protocol>://<host>` of the parent registry, with ParentHost's mapping of ACR data
// endpoints to login servers.
func (c ConnectionString) ParentURL() string {
	return c.ParentEndpointProtocol + "://" + c.ParentHost()
}

// Encode returns the connection string with its password, fields in canonical order. Parse(c.Encode())
// returns c. Handle the result as a secret.
func (c ConnectionString) Encode() string {
	return c.format(c.SyncTokenPassword)
}

// String returns the connection string with the password replaced by Redacted.
func (c ConnectionString) String() string {
	return c.format(Redacted)
}

// GoString keeps the password out of %#v.
func (c ConnectionString) GoString() string {
	return fmt.Sprintf("connstring.ConnectionString{ConnectedRegistryName:%q, SyncTokenName:%q, SyncTokenPassword:%q, ParentGatewayEndpoint:%q, ParentEndpointProtocol:%q}",
		c.ConnectedRegistryName, c.SyncTokenName, Redacted, c.ParentGatewayEndpoint, c.ParentEndpointProtocol)
}

func (c ConnectionString) format(password string) string {
	return FieldConnectedRegistryName + "=" + c.ConnectedRegistryName +
		";" + FieldSyncTokenName + "=" + c.SyncTokenName +
		";" + FieldSyncTokenPassword + "=" + password +
		";" + FieldParentGatewayEndpoint + "=" + c.ParentGatewayEndpoint +
		";" + FieldParentEndpointProtocol + "=" + c.ParentEndpointProtocol
}
