package preflight

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/connstring"
	"github.com/connected-registry/connected-registry/internal/registryapi"
)

// Keys of the hook Secret for the parent check: public, but known only from the values before anything is
// installed.
const (
	// InputParentCA is the PEM the registry trusts for its parent besides the system roots.
	InputParentCA = "parentCA"
	// InputHTTPSProxy is the outbound proxy the registry reaches its parent through; it may hold a password.
	InputHTTPSProxy = "httpsProxy"
)

// parentTimeout bounds the parent check: a site that cannot reach its parent must not wait long to install.
const parentTimeout = 5 * time.Second

// maxAnswer caps what the parent check reads of an answer.
const maxAnswer = 64 << 10

// credentials are what the registry authenticates to its parent with.
type credentials struct {
	user, password string
	// from names the values they come from, for messages.
	from string
}

// checkParent authenticates to the parent as the registry will: the challenge of /v2/, then the token endpoint
// it names (or Basic auth on /v2/). Credentials the parent refuses fail the install; a parent the cluster cannot
// reach only warns, since a disconnected site must install all the same.
func checkParent(ctx context.Context, c *Checker) (Status, string) {
	if c.Config.ParentURL == "" {
		return ok("not checked: no parent URL given")
	}
	parent, err := url.Parse(c.Config.ParentURL)
	if err != nil || parent.Host == "" {
		return fail("the parent URL %q is not a URL: set registry.parent.url to https://host[:port], or fix ParentGatewayEndpoint in connectionString", c.Config.ParentURL)
	}
	creds, st, msg := c.parentCredentials(ctx)
	if st != OK {
		return st, msg
	}
	client, err := c.parentClient(ctx)
	if err != nil {
		return fail("%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, parentTimeout)
	defer cancel()

	ping := parent.JoinPath("/v2/")
	resp, body, err := get(ctx, client, ping.String(), nil)
	var untrusted *tls.CertificateVerificationError
	if errors.As(err, &untrusted) {
		return fail("the parent %s serves a certificate the registry will not trust (%v): put the CA that signed it in registry.parent.caBundle", parent.Host, untrusted.Err)
	}
	if err != nil {
		return warn("the parent %s cannot be reached from the cluster (%v): the install goes on, and the registry fills its cache once the parent answers", parent.Host, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK && creds.user == "":
		return ok("the parent %s answers without credentials", parent.Host)
	case resp.StatusCode == http.StatusOK:
		return ok("the parent %s answers; it asked for no credentials, so sync token %s is not checked", parent.Host, creds.user)
	case resp.StatusCode != http.StatusUnauthorized:
		return warn("the parent %s answered GET /v2/ with %s%s: it may not be a registry", parent.Host, resp.Status, detail(body))
	case creds.user == "":
		return fail("the parent %s asks for credentials and none are given: set connectionString, or registry.parent.credentialsSecret", parent.Host)
	}

	header := resp.Header.Get("WWW-Authenticate")
	cs, err := registryapi.ParseChallenges(header)
	if err != nil || len(cs) == 0 {
		return warn("the parent %s answered GET /v2/ with %s and the challenge %q, which the registry cannot follow", parent.Host, resp.Status, header)
	}
	var target *url.URL
	var what string
	switch strings.ToLower(cs[0].Scheme) {
	case "bearer":
		r, _ := cs[0].Param("realm")
		realm, err := registryapi.RealmURL(r, parent)
		if err != nil {
			return warn("the parent %s names no usable token realm (%v): the registry's gate will not send the sync token there", parent.Host, err)
		}
		q := realm.Query()
		if s, _ := cs[0].Param("service"); s != "" {
			q.Set("service", s)
		}
		q.Set("account", creds.user)
		realm.RawQuery = q.Encode()
		target, what = realm, "the parent's token endpoint "+realm.Host
	case "basic":
		target, what = ping, "the parent "+parent.Host
	default:
		return warn("the parent %s asks for %q authentication, which the registry does not speak", parent.Host, cs[0].Scheme)
	}
	resp, body, err = get(ctx, client, target.String(), &creds)
	if err != nil {
		return warn("%s cannot be reached from the cluster (%v): the install goes on, and the registry fills its cache once it answers", what, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return ok("%s accepts sync token %s", what, creds.user)
	case http.StatusUnauthorized, http.StatusForbidden:
		return fail("%s refused sync token %s (%s%s): check %s", what, creds.user, resp.Status, detail(body), creds.from)
	}
	return warn("%s answered %s%s when asked for sync token %s", what, resp.Status, detail(body), creds.user)
}

// parentCredentials reads the credentials the registry will use: registry.parent.credentialsSecret's, or the
// connection string's sync token.
func (c *Checker) parentCredentials(ctx context.Context) (credentials, Status, string) {
	if name := c.Config.ParentCredentialsSecret; name != "" {
		s, err := c.Client.CoreV1().Secrets(c.Config.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			st, msg := fail("reading registry.parent.credentialsSecret %s/%s: %v", c.Config.Namespace, name, err)
			return credentials{}, st, msg
		}
		user, pass := strings.TrimSpace(string(s.Data["username"])), strings.TrimSpace(string(s.Data["password"]))
		if user == "" || pass == "" {
			st, msg := fail("registry.parent.credentialsSecret %s/%s needs the keys username and password", c.Config.Namespace, name)
			return credentials{}, st, msg
		}
		return credentials{user, pass, "the username and password of Secret " + name + " (registry.parent.credentialsSecret)"}, OK, ""
	}
	v, found, err := c.inputValue(ctx, InputConnectionString)
	if err != nil {
		st, msg := fail("%v", err)
		return credentials{}, st, msg
	}
	if !found {
		return credentials{}, OK, ""
	}
	cs, err := connstring.Parse(v)
	if err != nil {
		// The connection-string check says what is wrong.
		st, msg := ok("not checked: connectionString does not parse")
		return credentials{}, st, msg
	}
	return credentials{cs.SyncTokenName, cs.SyncTokenPassword, "SyncTokenName and SyncTokenPassword in connectionString"}, OK, ""
}

// parentClient trusts what the registry trusts for its parent (the system roots and registry.parent.caBundle)
// and goes through the outbound proxy it uses.
func (c *Checker) parentClient(ctx context.Context) (*http.Client, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if ca, found, err := c.inputValue(ctx, InputParentCA); err != nil {
		return nil, err
	} else if found && strings.TrimSpace(ca) != "" && !roots.AppendCertsFromPEM([]byte(ca)) {
		return nil, errors.New("registry.parent.caBundle holds no PEM certificate: give the PEM of the CA that signed the parent's certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true}
	proxy, found, err := c.inputValue(ctx, InputHTTPSProxy)
	if err != nil {
		return nil, err
	}
	if found && proxy != "" {
		u, err := url.Parse(proxy)
		if err != nil || u.Host == "" {
			return nil, errors.New("Azure.proxySettings.httpsProxy is not a URL such as http://proxy.example:3128")
		}
		tr.Proxy = http.ProxyURL(u)
	}
	// The registry follows no redirect of /v2/ or of a token endpoint either.
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

func get(ctx context.Context, client *http.Client, u string, creds *credentials) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	if creds != nil {
		req.SetBasicAuth(creds.user, creds.password)
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the message already
		}
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return resp, body, nil
}

// detail is the message of an error answer of the distribution API, as ": message", or "".
func detail(body []byte) string {
	if m := registryapi.ErrorMessage(body); m != "" {
		return ": " + m
	}
	return ""
}
