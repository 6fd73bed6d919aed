package clientauth

import (
	"context"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Watch follows the tokens Secret namespace/name through the API (list and watch of that one name, which a
// Role with resourceNames allows) and gives the issuer its client tokens each time the Secret changes. A
// deleted or absent Secret means no client tokens: every request is refused. A token that does not parse is
// refused and logged, the others keep working. Watch returns once the first state is applied, and follows the
// Secret until ctx ends.
func Watch(ctx context.Context, cs kubernetes.Interface, namespace, name string, is *Issuer, log *slog.Logger) error {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return cs.CoreV1().Secrets(namespace).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return cs.CoreV1().Secrets(namespace).Watch(ctx, o)
		},
	}
	apply := func(obj any) {
		s, ok := obj.(*corev1.Secret)
		if !ok || s.Name != name {
			return
		}
		clients, err := ParseClients(s.Data)
		if err != nil {
			log.Error("client tokens left out of the tokens Secret", "secret", namespace+"/"+name, "err", err)
		}
		is.SetClients(clients)
		log.Info("client tokens loaded", "secret", namespace+"/"+name, "resourceVersion", s.ResourceVersion, "tokens", len(clients))
	}
	// No tokens until the Secret is read: refuse everything rather than trust a stale state.
	is.SetClients(Clients{})
	_, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		// The fake clientset of the unit tests does not speak watch-list; the wrapper asks the client.
		ListerWatcher: cache.ToListWatcherWithWatchListSemantics(lw, cs),
		ObjectType:    &corev1.Secret{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    apply,
			UpdateFunc: func(_, obj any) { apply(obj) },
			DeleteFunc: func(any) {
				is.SetClients(Clients{})
				log.Warn("the tokens Secret was deleted: every token request is refused", "secret", namespace+"/"+name)
			},
		},
	})
	go ctrl.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), ctrl.HasSynced) {
		return fmt.Errorf("reading Secret %s/%s: %w", namespace, name, ctx.Err())
	}
	return nil
}
