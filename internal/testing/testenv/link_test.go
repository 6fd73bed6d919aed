package testenv

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
)

func TestLinkRelaysBothWaysAndCloses(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // an echo server
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	if _, err := StartLink("127.0.0.1:0", l.Addr().String(), 100); err == nil {
		t.Fatal("a rate below one chunk per second should be refused")
	}
	link, err := StartLink("127.0.0.1:0", l.Addr().String(), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", link.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := make([]byte, 256<<10)
	_, _ = rand.Read(want)
	go func() { _, _ = c.Write(want) }()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo through the link: %v", err)
	}
	if !bytes.Equal(want, got) {
		t.Fatal("the link changed the bytes")
	}
	link.Close()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection stayed open after the link was closed")
	}
}
