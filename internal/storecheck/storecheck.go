// Package storecheck checks, before the registry is installed, that the object store of its cache (an Azure Blob
// container or an S3 bucket, the chart's storage.type azure or s3) is reachable with the credentials given and
// writable: it makes sure the container or bucket exists (creating it when allowed, or saying exactly how to), then
// writes, reads back and deletes a probe object under the cache's root directory.
//
// Messages name the chart value and the fix; they never hold a credential's value.
package storecheck

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"
)

// Store is one object store: a container or bucket in an account.
type Store interface {
	// Describe names the store for messages: its type, account or endpoint, and container or bucket.
	Describe() string
	// Exists reports whether the container or bucket exists.
	Exists(ctx context.Context) (bool, error)
	// Create creates the container or bucket.
	Create(ctx context.Context) error
	// HowToCreate is the command that creates the container or bucket by hand.
	HowToCreate() string
	// Put, Get and Delete handle one object.
	Put(ctx context.Context, key string, data []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
	// Values names the chart values of the store: the container or bucket, the credentials Secret, the endpoint.
	Values() Values
}

// Values are the chart keys a message names.
type Values struct {
	Container, Credentials, Endpoint string
}

// Options of a check.
type Options struct {
	// Create lets the check create a missing container or bucket (storage.createIfMissing).
	Create bool
	// RootDirectory is the cache's folder in the store; the probe object goes under it.
	RootDirectory string
}

// Result is what the check did, in order.
type Result struct {
	// Created is true when the check created the container or bucket.
	Created bool
	// Steps are one line per step that passed.
	Steps []string
}

// ErrMissing is a container or bucket that does not exist and that the check may not create.
var ErrMissing = errors.New("the cache's container or bucket does not exist")

// Check makes sure the store exists, then writes, reads back and deletes a probe object. It stops at the first
// failure, with a message that names the value and the fix.
func Check(ctx context.Context, s Store, o Options) (Result, error) {
	var res Result
	v := s.Values()
	exists, err := s.Exists(ctx)
	if err != nil {
		return res, fmt.Errorf("cannot reach %s: %w; check %s and the credentials in %s", s.Describe(), err, v.Endpoint, v.Credentials)
	}
	if !exists {
		if !o.Create {
			return res, fmt.Errorf("%w: %s; create it (%s), or set storage.createIfMissing=true to let the preflight create it", ErrMissing, s.Describe(), s.HowToCreate())
		}
		if err := s.Create(ctx); err != nil {
			return res, fmt.Errorf("%s does not exist and creating it failed: %w; create it by hand (%s), or give credentials in %s that may create it", s.Describe(), err, s.HowToCreate(), v.Credentials)
		}
		res.Created = true
		res.Steps = append(res.Steps, "created "+s.Describe())
	} else {
		res.Steps = append(res.Steps, "reached "+s.Describe())
	}

	key, data, err := probe(o.RootDirectory)
	if err != nil {
		return res, err
	}
	if err := s.Put(ctx, key, data); err != nil {
		return res, fmt.Errorf("cannot write the probe object %s to %s: %w; the credentials in %s need write access to %s", key, s.Describe(), err, v.Credentials, v.Container)
	}
	got, err := s.Get(ctx, key)
	if err == nil && !bytes.Equal(got, data) {
		err = fmt.Errorf("read %d bytes back, not the %d written", len(got), len(data))
	}
	if err != nil {
		_ = s.Delete(ctx, key)
		return res, fmt.Errorf("cannot read back the probe object %s from %s: %w; the credentials in %s need read access to %s", key, s.Describe(), err, v.Credentials, v.Container)
	}
	if err := s.Delete(ctx, key); err != nil {
		return res, fmt.Errorf("cannot delete the probe object %s from %s: %w; the credentials in %s need delete access to %s (the registry removes its upload files)", key, s.Describe(), err, v.Credentials, v.Container)
	}
	res.Steps = append(res.Steps, fmt.Sprintf("wrote, read back and deleted %s", key))
	return res, nil
}

// probe is a probe object's key under root, and its random content.
func probe(root string) (string, []byte, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("making a probe object: %w", err)
	}
	name := "connected-registry-preflight-" + hex.EncodeToString(b[:8])
	key := path.Join(strings.Trim(root, "/"), "_connected-registry", name)
	return key, []byte("connected-registry preflight probe " + hex.EncodeToString(b)), nil
}
