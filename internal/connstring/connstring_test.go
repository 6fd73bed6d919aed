package connstring_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/connstring"
)

const (
	password = "Qx7+vN2/kP9sL4mW8rT1yZ6cB3dF5gH0jK=="
	valid    = "ConnectedRegistryName=myconnectedregistry;SyncTokenName=myconnectedregistry-sync-token;" +
		"SyncTokenPassword=" + password + ";ParentGatewayEndpoint=myregistry.eastus.data.azurecr.io;ParentEndpointProtocol=https"
)

var parsedValid = connstring.ConnectionString{
	ConnectedRegistryName:  "myconnectedregistry",
	SyncTokenName:          "myconnectedregistry-sync-token",
	SyncTokenPassword:      password,
	ParentGatewayEndpoint:  "myregistry.eastus.data.azurecr.io",
	ParentEndpointProtocol: "https",
}

// with replaces the value of one field of the valid connection string.
func with(field, value string) string {
	parts := strings.Split(valid, ";")
	for i, p := range parts {
		if strings.HasPrefix(p, field+"=") {
			parts[i] = field + "=" + value
		}
	}
	return strings.Join(parts, ";")
}

// without removes one field of the valid connection string.
func without(fields ...string) string {
	var parts []string
outer:
	for _, p := range strings.Split(valid, ";") {
		for _, f := range fields {
			if strings.HasPrefix(p, f+"=") {
				continue outer
			}
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ";")
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    connstring.ConnectionString
		wantErr string
		is      error
		field   string
	}{
		{
			name: "the output of az acr connected-registry get-settings should parse",
			in:   valid,
			want: parsedValid,
		},
		{
			name: "fields in another order should parse",
			in: "ParentEndpointProtocol=https;ParentGatewayEndpoint=myregistry.eastus.data.azurecr.io;SyncTokenPassword=" + password +
				";SyncTokenName=myconnectedregistry-sync-token;ConnectedRegistryName=myconnectedregistry",
			want: parsedValid,
		},
		{
			name: "a single trailing semicolon should be tolerated",
			in:   valid + ";",
			want: parsedValid,
		},
		{
			name: "an upper-case protocol should parse and be lower-cased",
			in:   with("ParentEndpointProtocol", "HTTPS"),
			want: parsedValid,
		},
		{
			name: "a password holding equals signs should keep them",
			in:   with("SyncTokenPassword", "a=b=="),
			want: func() connstring.ConnectionString { c := parsedValid; c.SyncTokenPassword = "a=b=="; return c }(),
		},
		{
			name: "an IPv4 endpoint with a port and the http protocol should parse",
			in:   with("ParentGatewayEndpoint", "127.0.0.1:5443") + "",
			want: func() connstring.ConnectionString {
				c := parsedValid
				c.ParentGatewayEndpoint = "127.0.0.1:5443"
				return c
			}(),
		},
		{
			name: "a bracketed IPv6 endpoint with a port should parse",
			in:   with("ParentGatewayEndpoint", "[2001:db8::1]:8443"),
			want: func() connstring.ConnectionString {
				c := parsedValid
				c.ParentGatewayEndpoint = "[2001:db8::1]:8443"
				return c
			}(),
		},
		{
			name:    "an empty string should fail",
			in:      "",
			is:      connstring.ErrEmpty,
			wantErr: "connection string is empty; set it to the output of az acr connected-registry get-settings",
		},
		{
			name:    "a string over the size cap should fail",
			in:      valid + strings.Repeat(";", connstring.MaxLength),
			is:      connstring.ErrTooLong,
			wantErr: fmt.Sprintf("connection string is %d bytes long, more than the 4096 a connection string can be; copy the whole output of az acr connected-registry get-settings again", len(valid)+connstring.MaxLength),
		},
		{
			name:    "a trailing newline from a copied terminal line should fail",
			in:      valid + "\n",
			is:      connstring.ErrWhitespace,
			wantErr: "connection string ends with a newline (common when copied); remove it",
		},
		{
			name:    "a trailing Windows line ending should fail",
			in:      valid + "\r\n",
			is:      connstring.ErrWhitespace,
			wantErr: "connection string ends with a newline (common when copied); remove it",
		},
		{
			name:    "a leading newline should fail",
			in:      "\n" + valid,
			is:      connstring.ErrWhitespace,
			wantErr: "connection string starts with a newline (common when copied); remove it",
		},
		{
			name:    "a leading space should fail",
			in:      " " + valid,
			is:      connstring.ErrWhitespace,
			wantErr: "connection string starts with whitespace (common when copied); remove it",
		},
		{
			name:    "a trailing non-breaking space should fail",
			in:      valid + "\u00a0",
			is:      connstring.ErrWhitespace,
			wantErr: "connection string ends with whitespace (common when copied); remove it",
		},
		{
			name:    "a space inside the password should fail without showing it",
			in:      with("SyncTokenPassword", "abc def"),
			is:      connstring.ErrWhitespace,
			field:   "SyncTokenPassword",
			wantErr: "connection string contains whitespace (a space) in the value of SyncTokenPassword; remove it",
		},
		{
			name:    "spaces around a semicolon should fail naming the field",
			in:      strings.Replace(valid, ";SyncTokenPassword", "; SyncTokenPassword", 1),
			is:      connstring.ErrWhitespace,
			wantErr: "connection string contains whitespace (a space) in field 3; remove it",
		},
		{
			name:    "a zero-width space copied from a web page should fail",
			in:      with("SyncTokenName", "token\u200b"),
			is:      connstring.ErrInvalidCharacter,
			field:   "SyncTokenName",
			wantErr: "connection string contains the invisible or non-ASCII character U+200B in the value of SyncTokenName; retype it or copy the whole output of az acr connected-registry get-settings again",
		},
		{
			name:    "a byte-order mark at the start should fail",
			in:      "\ufeff" + valid,
			is:      connstring.ErrInvalidCharacter,
			wantErr: "connection string contains the invisible or non-ASCII character U+FEFF at the start; retype it or copy the whole output of az acr connected-registry get-settings again",
		},
		{
			name:    "invalid UTF-8 should fail",
			in:      with("ConnectedRegistryName", "my\xffregistry"),
			is:      connstring.ErrInvalidCharacter,
			field:   "ConnectedRegistryName",
			wantErr: "connection string contains the invisible or non-ASCII character an invalid UTF-8 byte in the value of ConnectedRegistryName; retype it or copy the whole output of az acr connected-registry get-settings again",
		},
		{
			name:    "curly double quotes around the whole string should fail",
			in:      "“" + valid + "”",
			is:      connstring.ErrTypographicQuotes,
			wantErr: "connection string contains typographic quotes copied from a document; use plain ASCII quotes or none",
		},
		{
			name:    "curly single quotes around the password should fail naming the field",
			in:      with("SyncTokenPassword", "‘"+password+"’"),
			is:      connstring.ErrTypographicQuotes,
			field:   "SyncTokenPassword",
			wantErr: "connection string field SyncTokenPassword contains typographic quotes copied from a document; use plain ASCII quotes or none",
		},
		{
			name:    "low-9 and guillemet quotes should fail",
			in:      with("ConnectedRegistryName", "„name«»"),
			is:      connstring.ErrTypographicQuotes,
			field:   "ConnectedRegistryName",
			wantErr: "connection string field ConnectedRegistryName contains typographic quotes copied from a document; use plain ASCII quotes or none",
		},
		{
			name:    "plain quotes that reached the value should fail",
			in:      `"` + valid + `"`,
			is:      connstring.ErrQuoted,
			wantErr: "connection string is wrapped in quotes; remove them (quoting for the shell or JSON is not part of the value)",
		},
		{
			name:    "a missing password should fail naming it",
			in:      without("SyncTokenPassword"),
			is:      connstring.ErrMissingField,
			field:   "SyncTokenPassword",
			wantErr: "connection string lacks SyncTokenPassword; add it or copy the whole output of az acr connected-registry get-settings again",
		},
		{
			name:    "several missing fields should all be named",
			in:      without("SyncTokenName", "SyncTokenPassword", "ParentEndpointProtocol"),
			is:      connstring.ErrMissingField,
			field:   "SyncTokenName",
			wantErr: "connection string lacks SyncTokenName, SyncTokenPassword and ParentEndpointProtocol; add it or copy the whole output of az acr connected-registry get-settings again",
		},
		{
			name:    "an empty password should fail",
			in:      with("SyncTokenPassword", ""),
			is:      connstring.ErrEmptyValue,
			field:   "SyncTokenPassword",
			wantErr: "connection string field SyncTokenPassword is empty; give it a value or copy the whole output of az acr connected-registry get-settings again",
		},
		{
			name:    "an unknown field should fail listing the known ones",
			in:      valid + ";Region=eastus",
			is:      connstring.ErrUnknownField,
			wantErr: `connection string has an unknown field "Region"; the fields are ConnectedRegistryName, SyncTokenName, SyncTokenPassword, ParentGatewayEndpoint and ParentEndpointProtocol`,
		},
		{
			name:    "a field in the wrong case should fail with the right spelling",
			in:      strings.Replace(valid, "SyncTokenName=", "synctokenname=", 1),
			is:      connstring.ErrUnknownField,
			field:   "SyncTokenName",
			wantErr: `connection string field "synctokenname" is misspelled; write SyncTokenName`,
		},
		{
			name:    "a password holding a semicolon should fail without echoing its pieces",
			in:      with("SyncTokenPassword", "abc;x+y=z"),
			is:      connstring.ErrUnknownField,
			wantErr: "connection string field 4, after SyncTokenPassword, has an unknown name; if the password holds a ';', generate another with az acr connected-registry get-settings --generate-password 1; the fields are ConnectedRegistryName, SyncTokenName, SyncTokenPassword, ParentGatewayEndpoint and ParentEndpointProtocol",
		},
		{
			name:    "a password holding a semicolon and a word before an equals sign should fail without echoing the word",
			in:      with("SyncTokenPassword", "abc;Secretword=z"),
			is:      connstring.ErrUnknownField,
			wantErr: "connection string field 4, after SyncTokenPassword, has an unknown name; if the password holds a ';', generate another with az acr connected-registry get-settings --generate-password 1; the fields are ConnectedRegistryName, SyncTokenName, SyncTokenPassword, ParentGatewayEndpoint and ParentEndpointProtocol",
		},
		{
			name:    "a piece without an equals sign should fail without echoing it",
			in:      with("SyncTokenPassword", "abc;secretpiece"),
			is:      connstring.ErrMalformedField,
			wantErr: "connection string field 4 has no '='; write Name=value pairs separated by semicolons",
		},
		{
			name:    "two semicolons in a row should fail",
			in:      strings.Replace(valid, ";", ";;", 1),
			is:      connstring.ErrMalformedField,
			wantErr: "connection string has an empty field 2 (two semicolons in a row); remove the extra semicolon",
		},
		{
			name:    "a value without a name should fail",
			in:      valid + ";=x",
			is:      connstring.ErrMalformedField,
			wantErr: "connection string field 6 has no name before '='; write Name=value pairs separated by semicolons",
		},
		{
			name:    "a duplicate field should fail",
			in:      valid + ";SyncTokenName=other",
			is:      connstring.ErrDuplicateField,
			field:   "SyncTokenName",
			wantErr: "connection string has SyncTokenName twice; keep one",
		},
		{
			name:    "an unsupported protocol should fail",
			in:      with("ParentEndpointProtocol", "ftp"),
			is:      connstring.ErrProtocol,
			field:   "ParentEndpointProtocol",
			wantErr: `connection string field ParentEndpointProtocol is "ftp"; use https (or http for a parent without TLS)`,
		},
		{
			name:    "an endpoint with a scheme should fail",
			in:      with("ParentGatewayEndpoint", "https://myregistry.azurecr.io"),
			is:      connstring.ErrEndpoint,
			field:   "ParentGatewayEndpoint",
			wantErr: `connection string field ParentGatewayEndpoint "https://myregistry.azurecr.io" includes a scheme; remove "https://" and set ParentEndpointProtocol instead`,
		},
		{
			name:    "an endpoint with a path should fail",
			in:      with("ParentGatewayEndpoint", "myregistry.azurecr.io/v2/"),
			is:      connstring.ErrEndpoint,
			field:   "ParentGatewayEndpoint",
			wantErr: `connection string field ParentGatewayEndpoint "myregistry.azurecr.io/v2/" includes a path; give only the host name and an optional port, like myregistry.eastus.data.azurecr.io or 192.168.0.10:8080`,
		},
		{
			name:    "an endpoint with user information should fail without echoing it",
			in:      with("ParentGatewayEndpoint", "user:secret@myregistry.azurecr.io"),
			is:      connstring.ErrEndpoint,
			field:   "ParentGatewayEndpoint",
			wantErr: "connection string field ParentGatewayEndpoint holds user information ('@'); give only the host name and an optional port, like myregistry.eastus.data.azurecr.io or 192.168.0.10:8080",
		},
		{
			name:    "an endpoint with a port out of range should fail",
			in:      with("ParentGatewayEndpoint", "127.0.0.1:70000"),
			is:      connstring.ErrEndpoint,
			field:   "ParentGatewayEndpoint",
			wantErr: `connection string field ParentGatewayEndpoint "127.0.0.1:70000" has an invalid port; use a number from 1 to 65535 or leave the port out`,
		},
		{
			name:    "an endpoint with an empty port should fail",
			in:      with("ParentGatewayEndpoint", "myregistry.azurecr.io:"),
			is:      connstring.ErrEndpoint,
			field:   "ParentGatewayEndpoint",
			wantErr: `connection string field ParentGatewayEndpoint "myregistry.azurecr.io:" has an invalid port; use a number from 1 to 65535 or leave the port out`,
		},
		{
			name:    "an unbracketed IPv6 endpoint should fail",
			in:      with("ParentGatewayEndpoint", "2001:db8::1"),
			is:      connstring.ErrEndpoint,
			field:   "ParentGatewayEndpoint",
			wantErr: `connection string field ParentGatewayEndpoint "2001:db8::1" looks like an IPv6 address; write it in brackets, like [2001:db8::1]:443`,
		},
		{
			name:    "an endpoint with an underscore should fail",
			in:      with("ParentGatewayEndpoint", "my_registry.azurecr.io"),
			is:      connstring.ErrEndpoint,
			field:   "ParentGatewayEndpoint",
			wantErr: `connection string field ParentGatewayEndpoint "my_registry.azurecr.io" is not a valid host name; like myregistry.eastus.data.azurecr.io or 192.168.0.10:8080`,
		},
		{
			name:    "a mistyped IPv4 endpoint should fail",
			in:      with("ParentGatewayEndpoint", "10.0.0.300"),
			is:      connstring.ErrEndpoint,
			field:   "ParentGatewayEndpoint",
			wantErr: `connection string field ParentGatewayEndpoint "10.0.0.300" is not a valid host name; like myregistry.eastus.data.azurecr.io or 192.168.0.10:8080`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := connstring.Parse(tt.in)
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.Equal(t, tt.want, got)
				return
			}
			require.EqualError(t, err, tt.wantErr)
			require.ErrorIs(t, err, tt.is)
			var ce *connstring.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, tt.field, ce.Field)
			require.NotContains(t, err.Error(), password)
			require.Equal(t, connstring.ConnectionString{}, got)
		})
	}
}

// parentEndpoint is one case of testdata/parent-endpoints.json, the table of parent endpoints and the parent URL
// they give. The chart maps endpoints too (cr.parentURL), and tests/chart reads the same table.
type parentEndpoint struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	Protocol string `json:"protocol"`
	Parent   string `json:"parent"`
}

func TestParentURL(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("testdata", "parent-endpoints.json"))
	require.NoError(t, err)
	var tests []parentEndpoint
	require.NoError(t, json.Unmarshal(data, &tests))
	require.NotEmpty(t, tests)
	for _, tt := range tests {
		t.Run(tt.Name, func(t *testing.T) {
			t.Parallel()
			cs, err := connstring.Parse(with("ParentGatewayEndpoint", tt.Endpoint) + ";")
			require.NoError(t, err)
			cs.ParentEndpointProtocol = tt.Protocol
			require.Equal(t, tt.Parent, cs.ParentURL())
		})
	}
}

func TestPrintingRedactsThePassword(t *testing.T) {
	t.Parallel()
	cs, err := connstring.Parse(valid)
	require.NoError(t, err)
	want := "ConnectedRegistryName=myconnectedregistry;SyncTokenName=myconnectedregistry-sync-token;SyncTokenPassword=<redacted>;" +
		"ParentGatewayEndpoint=myregistry.eastus.data.azurecr.io;ParentEndpointProtocol=https"
	for _, format := range []string{"%v", "%+v", "%s", "%#v"} {
		for _, v := range []any{cs, &cs, struct{ C connstring.ConnectionString }{cs}} {
			out := fmt.Sprintf(format, v)
			require.NotContains(t, out, password, "format %s of %T", format, v)
			require.Contains(t, out, connstring.Redacted, "format %s of %T", format, v)
		}
	}
	require.Equal(t, want, cs.String())
	require.Equal(t, valid, cs.Encode())
}

func TestErrorsAreMatchableWithErrorsIs(t *testing.T) {
	t.Parallel()
	_, err := connstring.Parse(without("SyncTokenName"))
	wrapped := fmt.Errorf("reading /etc/connected-registry/parent/connectionString: %w", err)
	require.True(t, errors.Is(wrapped, connstring.ErrMissingField))
	var ce *connstring.Error
	require.True(t, errors.As(wrapped, &ce))
	require.Equal(t, connstring.FieldSyncTokenName, ce.Field)
}
