package preflight

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/clientauth"
)

// checkClientTokens checks the Secret clientTokens.secret names (it exists, and every key is a client token with
// a bcrypt hash and a valid scope), and the credentials of clientTokens.pullSecret.credentialsSecret (a token of
// that Secret, and its password). Messages name the Secret, the key and the fix, never a hash or a password.
func checkClientTokens(ctx context.Context, c *Checker) (Status, string) {
	cfg := c.Config
	if cfg.ClientTokensSecret == "" {
		return ok("client tokens are off: pulls are anonymous inside the cluster network")
	}
	ref := cfg.Namespace + "/" + cfg.ClientTokensSecret
	s, err := c.Client.CoreV1().Secrets(cfg.Namespace).Get(ctx, cfg.ClientTokensSecret, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fail("Secret %s named by clientTokens.secret does not exist: create it with one key per client token, "+
			"each a YAML document with password (a bcrypt hash: htpasswd -nbB <name> <password> | cut -d: -f2) and scope "+
			"(see the chart README, Client tokens)", ref)
	case err != nil:
		return fail("cannot read Secret %s named by clientTokens.secret: %v", ref, err)
	}
	if len(s.Data) == 0 {
		return fail("Secret %s named by clientTokens.secret holds no client token: every pull would be refused; add one key per client token", ref)
	}
	clients, err := clientauth.ParseClients(s.Data)
	if err != nil {
		return fail("Secret %s named by clientTokens.secret: %s; fix the key (its value is a YAML document with password, a bcrypt hash, and scope)",
			ref, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	msg := fmt.Sprintf("Secret %s holds %d client token(s): %s", ref, len(clients), strings.Join(sortedNames(clients), ", "))
	if len(cfg.PullSecretNamespaces) == 0 {
		return ok("%s", msg)
	}
	st, pmsg := checkPullCredentials(ctx, c, clients)
	if st != OK {
		return st, pmsg
	}
	return ok("%s; %s", msg, pmsg)
}

// errNoPullCredentials is the part of the message for a credentials Secret without a key.
var errNoPullCredentials = errors.New("needs the keys username (a client token's name) and password (its password)")

// checkPullCredentials checks the client token the pull Secrets will hold.
func checkPullCredentials(ctx context.Context, c *Checker, clients clientauth.Clients) (Status, string) {
	cfg := c.Config
	ref := cfg.Namespace + "/" + cfg.PullSecretCredentials
	s, err := c.Client.CoreV1().Secrets(cfg.Namespace).Get(ctx, cfg.PullSecretCredentials, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fail("Secret %s named by clientTokens.pullSecret.credentialsSecret does not exist: create it with "+
			"kubectl -n %s create secret generic %s --from-literal=username=<token name> --from-literal=password=<password>",
			ref, cfg.Namespace, cfg.PullSecretCredentials)
	case err != nil:
		return fail("cannot read Secret %s named by clientTokens.pullSecret.credentialsSecret: %v", ref, err)
	}
	user, password := string(s.Data["username"]), string(s.Data["password"])
	if user == "" || password == "" {
		return fail("Secret %s named by clientTokens.pullSecret.credentialsSecret %v", ref, errNoPullCredentials)
	}
	tok, found := clients[user]
	switch {
	case !found:
		return fail("Secret %s named by clientTokens.pullSecret.credentialsSecret: its username %q is no client token of Secret %s/%s: "+
			"use one of %s", ref, user, cfg.Namespace, cfg.ClientTokensSecret, strings.Join(sortedNames(clients), ", "))
	case tok.Disabled():
		return fail("Secret %s named by clientTokens.pullSecret.credentialsSecret: client token %q is disabled in Secret %s/%s: "+
			"enable it, or name another token", ref, user, cfg.Namespace, cfg.ClientTokensSecret)
	case !tok.CheckPassword(password):
		return fail("Secret %s named by clientTokens.pullSecret.credentialsSecret: its key password does not match client token %q's "+
			"hash in Secret %s/%s: put the token's password there, or the hash of this password in the tokens Secret",
			ref, user, cfg.Namespace, cfg.ClientTokensSecret)
	}
	return ok("pull Secrets hold client token %q (Secret %s) in %s", user, ref, strings.Join(cfg.PullSecretNamespaces, ", "))
}

func sortedNames(clients clientauth.Clients) []string {
	names := make([]string, 0, len(clients))
	for n := range clients {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
