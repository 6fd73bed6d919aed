package parentgate

// Record types of TLS (RFC 8446 section 5.1).
const (
	recordChangeCipherSpec = 20
	recordAlert            = 21
	recordHandshake        = 22
	recordApplicationData  = 23
)

// tlsRecords follows the TLS records the registry sends through a tunnel, to tell which of its bytes the parent
// answers. The handshake's first flight is answered and so is every request; the last message of a TLS 1.3
// handshake, the client's Finished (the first application-data record, when no handshake record followed the
// ChangeCipherSpec as it does in TLS 1.2), is not, and neither are alerts (the closing one) or a
// ChangeCipherSpec. Without this, a connection the registry opened and left idle, as HTTP/1.1 transports do
// when another connection frees first, would look like a silent parent. A stream that does not start as TLS is
// answered byte for byte.
type tlsRecords struct {
	notTLS  bool
	header  [5]byte
	have    int // bytes of header read
	skip    int // body bytes of the current record still to come
	sawCCS  bool
	tls12   bool // a handshake record followed the ChangeCipherSpec: TLS 1.2, whose Finished the server answers
	appData int  // application-data records seen
}

// expectsAnswer consumes p and reports whether a record starting in it expects the parent to answer.
func (t *tlsRecords) expectsAnswer(p []byte) bool {
	if t.notTLS {
		return len(p) > 0
	}
	answer := false
	for len(p) > 0 {
		if t.skip > 0 {
			n := min(t.skip, len(p))
			t.skip -= n
			p = p[n:]
			continue
		}
		n := copy(t.header[t.have:], p)
		t.have += n
		p = p[n:]
		if t.have < len(t.header) {
			break
		}
		t.have = 0
		t.skip = int(t.header[3])<<8 | int(t.header[4])
		switch typ := t.header[0]; typ {
		case recordChangeCipherSpec:
			t.sawCCS = true
		case recordAlert:
		case recordHandshake:
			if t.sawCCS {
				t.tls12 = true
			}
			answer = true
		case recordApplicationData:
			t.appData++
			if t.appData > 1 || t.tls12 {
				answer = true
			}
		default:
			// Not TLS after all: count every byte from here on.
			t.notTLS = true
			return true
		}
	}
	return answer
}
