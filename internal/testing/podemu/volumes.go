package podemu

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// prepareVolumes creates the pod's volumes as directories under Dir/volumes.
func (p *Pod) prepareVolumes() error {
	for _, v := range sliceOf(p.spec["volumes"]) {
		vm, _ := v.(map[string]any)
		name, _ := vm["name"].(string)
		dir := filepath.Join(p.opts.Dir, "volumes", name)
		p.Volumes[name] = dir
		if err := p.prepareVolume(name, dir, vm); err != nil {
			return err
		}
	}
	return nil
}

// prepareVolume creates one volume: ConfigMaps and Secrets from the render (or from External), emptyDirs anew,
// the PersistentVolumeClaim's directory kept, the service account token empty (there is no API server).
func (p *Pod) prepareVolume(name, dir string, vm map[string]any) error {
	switch {
	case vm["emptyDir"] != nil:
		return freshDir(dir, 0o777)
	case vm["persistentVolumeClaim"] != nil:
		src, err := mapAt(vm, "persistentVolumeClaim")
		if err != nil {
			return fmt.Errorf("volume %s: %w", name, err)
		}
		claim, _ := src["claimName"].(string)
		if _, ok := p.res.Find("PersistentVolumeClaim", claim); !ok {
			return fmt.Errorf("volume %s uses PersistentVolumeClaim %q, which the chart does not render", name, claim)
		}
		return os.MkdirAll(dir, 0o777)
	case vm["configMap"] != nil:
		return writeSourceVolume(name, dir, vm, "configMap", "name", p.configMap)
	case vm["secret"] != nil:
		return writeSourceVolume(name, dir, vm, "secret", "secretName", p.secret)
	case isServiceAccountToken(vm):
		// No API server here: only the tls-reloader mounts the token, and standInForTLSReloader replaces it.
		return freshDir(dir, 0o755)
	default:
		return fmt.Errorf("volume %s has a type podemu does not emulate: %v", name, vm)
	}
}

// writeSourceVolume writes a ConfigMap or Secret volume: source is its key in the volume (configMap, secret),
// nameKey the key naming the object, data what returns the object's keys.
func writeSourceVolume(name, dir string, vm map[string]any, source, nameKey string, data func(string) (map[string]string, error)) error {
	src, err := mapAt(vm, source)
	if err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	obj, _ := src[nameKey].(string)
	keys, err := data(obj)
	if err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	return writeVolume(dir, keys, src)
}

// isServiceAccountToken tells whether a volume is a projected API token (a serviceAccountToken source, with the
// cluster's CA and the namespace beside it).
func isServiceAccountToken(vm map[string]any) bool {
	proj, ok := vm["projected"].(map[string]any)
	if !ok {
		return false
	}
	for _, src := range sliceOf(proj["sources"]) {
		if sm, _ := src.(map[string]any); sm["serviceAccountToken"] != nil {
			return true
		}
	}
	return false
}

// configMap returns the data of a ConfigMap the chart renders.
func (p *Pod) configMap(name string) (map[string]string, error) {
	doc, ok := p.res.Find("ConfigMap", name)
	if !ok {
		return nil, fmt.Errorf("the chart renders no ConfigMap %q", name)
	}
	m, err := mapAt(doc.Object, "data")
	if err != nil {
		return nil, fmt.Errorf("the ConfigMap %q: %w", name, err)
	}
	data := map[string]string{}
	for k, v := range m {
		data[k] = fmt.Sprint(v)
	}
	return data, nil
}

// secret returns the keys of a Secret the chart renders or the user creates (External).
func (p *Pod) secret(name string) (map[string]string, error) {
	if doc, rendered := p.res.Find("Secret", name); rendered {
		return secretData(name, doc.Object)
	}
	data, ok := p.opts.External[name]
	if !ok {
		return nil, fmt.Errorf("the Secret %q is neither rendered by the chart nor created by the user", name)
	}
	return data, nil
}

// secretData decodes a Secret's data and stringData.
func secretData(name string, obj map[string]any) (map[string]string, error) {
	out := map[string]string{}
	if d, ok := obj["data"].(map[string]any); ok {
		for k, v := range d {
			raw, err := base64.StdEncoding.DecodeString(fmt.Sprint(v))
			if err != nil {
				return nil, fmt.Errorf("the Secret %s's key %s is not base64: %w", name, k, err)
			}
			out[k] = string(raw)
		}
	}
	if d, ok := obj["stringData"].(map[string]any); ok {
		for k, v := range d {
			out[k] = fmt.Sprint(v)
		}
	}
	return out, nil
}

// writeVolume writes a ConfigMap's or Secret's keys as files into a fresh dir, honouring items.
func writeVolume(dir string, data map[string]string, src map[string]any) error {
	if err := freshDir(dir, 0o755); err != nil {
		return err
	}
	items := sliceOf(src["items"])
	if len(items) == 0 {
		for k, v := range data {
			if err := writeFile(filepath.Join(dir, k), v, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		im, _ := it.(map[string]any)
		key, _ := im["key"].(string)
		path, _ := im["path"].(string)
		v, ok := data[key]
		if !ok {
			return fmt.Errorf("volume item %q names a key its source does not have", key)
		}
		if err := writeFile(filepath.Join(dir, path), v, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// freshDir replaces dir with an empty directory.
func freshDir(dir string, mode os.FileMode) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, mode)
}

// writeFile writes a file, creating its directory.
func writeFile(path, data string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(data), mode)
}

// mounts maps a container's mount paths to host paths.
func (p *Pod) mounts(c map[string]any) (map[string]string, error) {
	out := map[string]string{}
	for _, m := range sliceOf(c["volumeMounts"]) {
		mm, _ := m.(map[string]any)
		name, _ := mm["name"].(string)
		host, ok := p.Volumes[name]
		if !ok {
			return nil, fmt.Errorf("container %s mounts volume %q, which the pod does not declare", c["name"], name)
		}
		if sub, _ := mm["subPath"].(string); sub != "" {
			host = filepath.Join(host, sub)
		}
		mp, _ := mm["mountPath"].(string)
		out[mp] = host
	}
	return out, nil
}

// remap maps an absolute container path onto the host through the longest matching mount.
func remap(mounts map[string]string, path string) (string, bool) {
	best := ""
	for mp := range mounts {
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	if best == "" {
		return path, false
	}
	return filepath.Join(mounts[best], strings.TrimPrefix(path, best)), true
}

// remapArgs maps path arguments (also the value of --flag=/path) through mounts.
func remapArgs(mounts map[string]string, args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "-") && strings.HasPrefix(v, "/") {
			if host, ok := remap(mounts, v); ok {
				a = k + "=" + host
			}
		} else if strings.HasPrefix(a, "/") {
			a, _ = remap(mounts, a)
		}
		out[i] = a
	}
	return out
}
