package storecheck

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 is a bucket of AWS S3 or an S3-compatible store, as Distribution's s3 driver reaches it with static keys.
type S3 struct {
	Bucket, Region string
	// Endpoint is the store's URL (storage.s3.regionEndpoint); empty is AWS S3 of Region.
	Endpoint                   string
	AccessKey, SecretKey       string
	ForcePathStyle, SkipVerify bool

	client *minio.Client
	host   string
}

// NewS3 checks the settings and builds the client.
func NewS3(s S3) (*S3, error) {
	secure, host := true, "s3.amazonaws.com"
	if s.Region != "" && s.Region != "us-east-1" {
		host = "s3." + s.Region + ".amazonaws.com"
	}
	if s.Endpoint != "" {
		u, err := url.Parse(s.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("storage.s3.regionEndpoint %q is not an http(s)://host[:port] URL", s.Endpoint)
		}
		secure, host = u.Scheme == "https", u.Host
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if s.SkipVerify {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // storage.s3.skipVerify, for test stores
	}
	lookup := minio.BucketLookupAuto
	if s.ForcePathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:       secure,
		Region:       s.Region,
		BucketLookup: lookup,
		Transport:    tr,
		MaxRetries:   2,
	})
	if err != nil {
		return nil, fmt.Errorf("storage.s3.regionEndpoint %q: %w", s.Endpoint, err)
	}
	s.client, s.host = c, host
	return &s, nil
}

// Describe implements Store.
func (s *S3) Describe() string {
	return fmt.Sprintf("S3 bucket %q at %s", s.Bucket, s.host)
}

// Values implements Store.
func (s *S3) Values() Values {
	return Values{Container: "storage.s3.bucket", Credentials: "storage.s3.credentialsSecret", Endpoint: "storage.s3.regionEndpoint and storage.s3.region"}
}

// HowToCreate implements Store.
func (s *S3) HowToCreate() string {
	endpoint := ""
	if s.Endpoint != "" {
		endpoint = " --endpoint-url " + s.Endpoint
	}
	return fmt.Sprintf("aws s3api create-bucket --bucket %s --region %s%s", s.Bucket, s.Region, endpoint)
}

// Exists implements Store.
func (s *S3) Exists(ctx context.Context) (bool, error) {
	ok, err := s.client.BucketExists(ctx, s.Bucket)
	return ok, s3Err(err)
}

// Create implements Store.
func (s *S3) Create(ctx context.Context) error {
	err := s.client.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{Region: s.Region})
	if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" {
		return nil
	}
	return s3Err(err)
}

// Put implements Store.
func (s *S3) Put(ctx context.Context, key string, data []byte) error {
	_, err := s.client.PutObject(ctx, s.Bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
	return s3Err(err)
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, key string) ([]byte, error) {
	o, err := s.client.GetObject(ctx, s.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s3Err(err)
	}
	defer o.Close()
	b, err := io.ReadAll(io.LimitReader(o, 1<<20))
	return b, s3Err(err)
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, key string) error {
	return s3Err(s.client.RemoveObject(ctx, s.Bucket, key, minio.RemoveObjectOptions{}))
}

// s3Err is the store's answer, by its code.
func s3Err(err error) error {
	if err == nil {
		return nil
	}
	if r := minio.ToErrorResponse(err); r.Code != "" {
		return fmt.Errorf("the store answered %d %s", r.StatusCode, r.Code)
	}
	return err
}
