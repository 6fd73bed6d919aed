// Package apistub is a TEST STAND-IN for the few calls of the Kubernetes API the sync runner makes: get and
// update a ConfigMap, create an Event. It serves them over HTTP on 127.0.0.1 from memory, so that the product
// binary runs against it as it runs in a pod, with a kubeconfig. It reads requests in JSON or protobuf and answers
// in JSON. Anything else is answered 404. It checks
// resourceVersion on update (409 on a stale one), as the API server does, and nothing of RBAC.
package apistub

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
)

// Server is the stand-in API server.
type Server struct {
	srv *httptest.Server

	mu         sync.Mutex
	configMaps map[string]*corev1.ConfigMap // by namespace/name
	events     []corev1.Event
	version    int
}

// Start serves on a free port of 127.0.0.1 until Close.
func Start() *Server {
	s := &Server{configMaps: map[string]*corev1.ConfigMap{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// URL is the server's http:// URL.
func (s *Server) URL() string { return s.srv.URL }

// WriteKubeconfig writes a kubeconfig for the server into dir and returns its path.
func (s *Server) WriteKubeconfig(dir string) (string, error) {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: stub
    cluster:
      server: %s
contexts:
  - name: stub
    context:
      cluster: stub
      user: stub
current-context: stub
users:
  - name: stub
    user:
      token: stub
`, s.URL())
	path := filepath.Join(dir, "kubeconfig")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// PutConfigMap stores cm as the API server would have it after a create.
func (s *Server) PutConfigMap(cm *corev1.ConfigMap) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := cm.DeepCopy()
	s.version++
	cp.ResourceVersion = strconv.Itoa(s.version)
	if cp.UID == "" {
		cp.UID = types.UID(fmt.Sprintf("uid-%d", s.version))
	}
	s.configMaps[cp.Namespace+"/"+cp.Name] = cp
}

// ConfigMap returns a copy of the ConfigMap, or nil.
func (s *Server) ConfigMap(namespace, name string) *corev1.ConfigMap {
	s.mu.Lock()
	defer s.mu.Unlock()
	cm := s.configMaps[namespace+"/"+name]
	if cm == nil {
		return nil
	}
	return cm.DeepCopy()
}

// Events returns the Events created so far.
func (s *Server) Events() []corev1.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]corev1.Event(nil), s.events...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// /api/v1/namespaces/<ns>/<resource>[/<name>]
	if len(parts) < 5 || parts[0] != "api" || parts[1] != "v1" || parts[2] != "namespaces" {
		s.status(w, http.StatusNotFound, "NotFound", "the stand-in API server serves only ConfigMaps and Events")
		return
	}
	ns, resource := parts[3], parts[4]
	name := ""
	if len(parts) > 5 {
		name = parts[5]
	}
	switch {
	case resource == "configmaps" && name != "" && r.Method == http.MethodGet:
		s.mu.Lock()
		cm := s.configMaps[ns+"/"+name]
		s.mu.Unlock()
		if cm == nil {
			s.status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("configmaps %q not found", name))
			return
		}
		cm = cm.DeepCopy()
		cm.TypeMeta = metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"}
		s.object(w, http.StatusOK, cm)
	case resource == "configmaps" && name != "" && r.Method == http.MethodPut:
		var cm corev1.ConfigMap
		if err := decode(r, &cm); err != nil {
			s.status(w, http.StatusBadRequest, "BadRequest", err.Error())
			return
		}
		s.mu.Lock()
		old := s.configMaps[ns+"/"+name]
		switch {
		case old == nil:
			s.mu.Unlock()
			s.status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("configmaps %q not found", name))
			return
		case cm.ResourceVersion != old.ResourceVersion:
			s.mu.Unlock()
			s.status(w, http.StatusConflict, "Conflict", "the object has been modified; please apply your changes to the latest version and try again")
			return
		}
		s.version++
		cm.ResourceVersion, cm.UID, cm.Namespace = strconv.Itoa(s.version), old.UID, ns
		s.configMaps[ns+"/"+name] = &cm
		s.mu.Unlock()
		out := cm.DeepCopy()
		out.TypeMeta = metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"}
		s.object(w, http.StatusOK, out)
	case resource == "events" && name == "" && r.Method == http.MethodPost:
		var ev corev1.Event
		if err := decode(r, &ev); err != nil {
			s.status(w, http.StatusBadRequest, "BadRequest", err.Error())
			return
		}
		s.mu.Lock()
		s.version++
		if ev.Name == "" {
			ev.Name = ev.GenerateName + strconv.Itoa(s.version)
		}
		ev.Namespace, ev.ResourceVersion, ev.CreationTimestamp = ns, strconv.Itoa(s.version), metav1.NewTime(time.Now())
		s.events = append(s.events, ev)
		s.mu.Unlock()
		ev.TypeMeta = metav1.TypeMeta{Kind: "Event", APIVersion: "v1"}
		s.object(w, http.StatusCreated, &ev)
	default:
		s.status(w, http.StatusNotFound, "NotFound", "the stand-in API server does not serve "+r.Method+" "+r.URL.Path)
	}
}

// decode reads a request's object, in JSON or in the protobuf encoding client-go sends by default.
func decode(r *http.Request, into runtime.Object) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	_, _, err = scheme.Codecs.UniversalDeserializer().Decode(body, nil, into)
	return err
}

func (s *Server) object(w http.ResponseWriter, code int, obj any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(obj)
}

func (s *Server) status(w http.ResponseWriter, code int, reason, msg string) {
	s.object(w, code, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Message: msg, Reason: metav1.StatusReason(reason), Code: int32(code)})
}
