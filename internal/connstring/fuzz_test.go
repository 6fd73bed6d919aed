package connstring_test

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/connected-registry/connected-registry/internal/connstring"
)

var sentinels = []error{
	connstring.ErrEmpty, connstring.ErrTooLong, connstring.ErrTypographicQuotes, connstring.ErrWhitespace,
	connstring.ErrQuoted, connstring.ErrInvalidCharacter, connstring.ErrMalformedField, connstring.ErrUnknownField,
	connstring.ErrDuplicateField, connstring.ErrMissingField, connstring.ErrEmptyValue, connstring.ErrProtocol,
	connstring.ErrEndpoint,
}

// FuzzParse checks, for any input: Parse does not panic; a successful parse round-trips through Encode and
// prints without its password; an error is a *connstring.Error wrapping a sentinel, reads as one lowercase
// sentence, and does not depend on the password's text (the same input with the password's letters and digits
// rotated yields the same message), so it cannot disclose it.
// The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add(valid)
	f.Add(valid + ";")
	f.Add("ConnectedRegistryName=a;SyncTokenName=b;SyncTokenPassword=c;ParentGatewayEndpoint=127.0.0.1:5443;ParentEndpointProtocol=http")
	f.Add(with("SyncTokenPassword", "pass;word=x"))
	f.Add("“" + valid + "”")
	f.Add(valid + "\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		cs, err := connstring.Parse(in)
		if err == nil {
			checkSuccess(t, in, cs)
			return
		}
		checkError(t, in, err)
	})
}

func checkSuccess(t *testing.T, in string, cs connstring.ConnectionString) {
	for name, v := range map[string]string{
		"ConnectedRegistryName": cs.ConnectedRegistryName, "SyncTokenName": cs.SyncTokenName,
		"SyncTokenPassword": cs.SyncTokenPassword, "ParentGatewayEndpoint": cs.ParentGatewayEndpoint,
		"ParentEndpointProtocol": cs.ParentEndpointProtocol,
	} {
		if v == "" || strings.ContainsAny(v, "; \t\r\n") {
			t.Fatalf("Parse(%q) accepted field %s = %q", in, name, v)
		}
	}
	again, err := connstring.Parse(cs.Encode())
	if err != nil {
		t.Fatalf("Parse(Encode()) of %q failed: %v", in, err)
	}
	if again != cs {
		t.Fatalf("Parse(Encode()) of %q = %#v, want %#v", in, again, cs)
	}
	want := cs.Encode()
	want = strings.Replace(want, "SyncTokenPassword="+cs.SyncTokenPassword+";", "SyncTokenPassword="+connstring.Redacted+";", 1)
	if cs.String() != want {
		t.Fatalf("String() = %q, want %q", cs.String(), want)
	}
	for _, format := range []string{"%v", "%+v", "%s"} {
		if got := fmt.Sprintf(format, cs); got != want {
			t.Fatalf("Sprintf(%s) = %q, want %q", format, got, want)
		}
	}
	if gs := fmt.Sprintf("%#v", cs); !strings.Contains(gs, `SyncTokenPassword:"`+connstring.Redacted+`"`) {
		t.Fatalf("%%#v = %q does not redact the password", gs)
	}
	u, err := url.Parse(cs.ParentURL())
	if err != nil {
		t.Fatalf("ParentURL() = %q does not parse: %v", cs.ParentURL(), err)
	}
	if u.Scheme != cs.ParentEndpointProtocol || u.Host == "" || u.Path != "" || u.User != nil || u.RawQuery != "" {
		t.Fatalf("ParentURL() = %q is not <protocol>://<host>", cs.ParentURL())
	}
}

func checkError(t *testing.T, in string, err error) {
	var ce *connstring.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse(%q) returned %T, want *connstring.Error", in, err)
	}
	matched := false
	for _, s := range sentinels {
		if errors.Is(err, s) {
			matched = true
		}
	}
	if !matched {
		t.Fatalf("Parse(%q) error %q wraps no sentinel", in, err)
	}
	msg := err.Error()
	first, _ := utf8.DecodeRuneInString(msg)
	if msg == "" || unicode.IsUpper(first) || strings.HasSuffix(msg, ".") || strings.ContainsAny(msg, "\n\r") {
		t.Fatalf("Parse(%q) error %q is not one lowercase line without a trailing period", in, msg)
	}
	rotated, ok := rotatePasswords(in)
	if !ok {
		return
	}
	_, err2 := connstring.Parse(rotated)
	if err2 == nil {
		t.Fatalf("Parse(%q) failed with %q but succeeded once the password's letters were rotated", in, msg)
	}
	// The message may not depend on the password's text: it must be the same with the password's letters and
	// digits rotated.
	if msg2 := err2.Error(); msg != msg2 {
		t.Fatalf("Parse(%q) error %q depends on the password (with it rotated: %q)", in, msg, msg2)
	}
}

// rotatePasswords returns in with the letters and digits of every SyncTokenPassword value rotated, and
// false when that changes nothing.
func rotatePasswords(in string) (string, bool) {
	segments := strings.Split(in, ";")
	changed := false
	for i, seg := range segments {
		key, value, found := strings.Cut(seg, "=")
		if !found || key != connstring.FieldSyncTokenPassword {
			continue
		}
		// Byte by byte: strings.Map would turn each invalid UTF-8 byte into a three-byte U+FFFD and change the
		// input's length, and so its verdict.
		b := []byte(value)
		for j, c := range b {
			switch {
			case c >= 'a' && c <= 'z':
				b[j] = 'a' + (c-'a'+13)%26
			case c >= 'A' && c <= 'Z':
				b[j] = 'A' + (c-'A'+13)%26
			case c >= '0' && c <= '9':
				b[j] = '0' + (c-'0'+5)%10
			}
		}
		rot := string(b)
		if rot != value {
			segments[i] = key + "=" + rot
			changed = true
		}
	}
	return strings.Join(segments, ";"), changed
}
