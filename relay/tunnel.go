package relay

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// handshakeTimeout bounds the exchange of the upgrade request and the
// owner's answer; after it the tunnel has no deadline (the websocket's own
// pings keep it busy, and TCP keepalive finds a vanished peer).
const handshakeTimeout = 10 * time.Second

// tunnelBuffer is the size of the buffers tunnels copy through; pooled, and
// held only while data passes.
const tunnelBuffer = 16 << 10

// maxErrorBody bounds an owner's refusal relayed to the client.
const maxErrorBody = 64 << 10

// tunnel is one websocket relayed to its owner.
type tunnel struct {
	client, owner net.Conn
	once          sync.Once
	ended         atomic.Int32 // directions that have stopped
}

func (t *tunnel) close() {
	t.once.Do(func() {
		_ = t.client.Close()
		_ = t.owner.Close()
	})
}

// tunnel relays a websocket upgrade to target: the request goes to the
// owner as it came (marked relayed); if the owner switches protocols, its
// answer goes back and the two connections are joined until either ends.
// Any other answer of the owner (a refusal) is relayed as it is. It returns
// false, having written nothing, when the owner did not answer.
func (r *Relay) tunnel(w http.ResponseWriter, req *http.Request, tag, target string) bool {
	ctx, cancel := context.WithTimeout(req.Context(), handshakeTimeout)
	defer cancel()
	stop := context.AfterFunc(r.ctx, cancel)
	defer stop()
	owner, err := r.dialer.DialContext(ctx, "tcp", target)
	if err != nil {
		switch {
		case req.Context().Err() != nil:
			return true
		case r.ctx.Err() == nil:
			r.unreachable(tag, target, err)
		}
		return false
	}
	// The deadline follows ctx for the handshake.
	stopDeadline := context.AfterFunc(ctx, func() { _ = owner.SetDeadline(time.Unix(1, 0)) })
	defer stopDeadline()
	_ = owner.SetDeadline(time.Now().Add(handshakeTimeout))

	var head bytes.Buffer
	head.WriteString(req.Method + " " + req.URL.RequestURI() + " HTTP/1.1\r\nHost: " + req.Host + "\r\n")
	// net/http has refused header values with line breaks; Header.Write
	// would also neutralise them.
	_ = req.Header.Write(&head)
	head.WriteString(ForwardedHeader + ": 1\r\n\r\n")
	br := bufio.NewReaderSize(owner, 4<<10) // the owner's answer, then dropped
	var res *http.Response
	if _, err = owner.Write(head.Bytes()); err == nil {
		res, err = http.ReadResponse(br, req)
	}
	if err != nil {
		_ = owner.Close()
		switch {
		case req.Context().Err() != nil:
			return true
		case r.ctx.Err() == nil:
			r.unreachable(tag, target, err)
		}
		return false
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		// A refusal (a session unknown there, a bad request): relayed as
		// it is, and the connection to the owner ends with it.
		defer owner.Close()
		r.copyHeader(w.Header(), res.Header)
		w.WriteHeader(res.StatusCode)
		_, _ = io.Copy(w, io.LimitReader(res.Body, maxErrorBody))
		return true
	}
	client, cbuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = owner.Close()
		w.WriteHeader(http.StatusInternalServerError)
		return true
	}
	if !stopDeadline() {
		// The handshake ran out of time just now.
		_ = owner.Close()
		_ = client.Close()
		return true
	}
	// The server may have set deadlines on the request's connection; the
	// tunnel has none.
	_ = owner.SetDeadline(time.Time{})
	_ = client.SetDeadline(time.Time{})

	head.Reset()
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	h := make(http.Header, len(res.Header)+1)
	if r.opts.NodeHeader != "" {
		if own := w.Header().Values(r.opts.NodeHeader); len(own) > 0 {
			h[http.CanonicalHeaderKey(r.opts.NodeHeader)] = own
		}
	}
	r.copyHeader(h, res.Header)
	// The switch itself is hop-by-hop, and must go through.
	h.Set("Upgrade", res.Header.Get("Upgrade"))
	h.Set("Connection", "Upgrade")
	_ = h.Write(&head)
	head.WriteString("\r\n")
	// What the owner sent past its answer, and the client before it, were
	// read into buffers already: they go first.
	if n := br.Buffered(); n > 0 {
		early, _ := br.Peek(n)
		head.Write(early)
	}
	_, err = client.Write(head.Bytes())
	if err == nil {
		if n := cbuf.Reader.Buffered(); n > 0 {
			early, _ := cbuf.Reader.Peek(n)
			_, err = owner.Write(early)
		}
	}
	if err != nil {
		_ = owner.Close()
		_ = client.Close()
		return true
	}

	// The request's goroutine, deep in the HTTP server's stack, ends here;
	// two goroutines of their own carry the tunnel, one per direction, and
	// end when either side closes (Close waits for them).
	t := &tunnel{client: client, owner: owner}
	if !r.track(t) {
		t.close()
		return true
	}
	r.stats.Tunneled.Add(1)
	go r.carry(t, owner, client)
	go r.carry(t, client, owner)
	return true
}

// carry copies one direction of t, then closes both and, for the second
// direction to end, forgets t.
func (r *Relay) carry(t *tunnel, dst, src net.Conn) {
	pipe(dst, src)
	t.close()
	if t.ended.Add(1) == 2 {
		r.untrack(t)
	}
}

// copyHeader copies the end-to-end headers of an owner's answer into h, the
// owner's NodeHeader as OwnerHeader.
func (r *Relay) copyHeader(h, from http.Header) {
	for k, vs := range endToEnd(from) {
		if r.opts.NodeHeader != "" && k == http.CanonicalHeaderKey(r.opts.NodeHeader) {
			h[OwnerHeader] = vs
			continue
		}
		h[k] = vs
	}
}

// pipe copies from src to dst until either fails. Most websockets are idle
// most of the time, so it holds no buffer while it waits: it waits for src
// to be readable, then reads into a pooled buffer and writes that out.
// (io.Copy would hold 32 KiB per direction for the tunnel's life, or, with
// splice, two pipes of two file descriptors each.)
func pipe(dst, src net.Conn) {
	sc, ok := src.(syscall.Conn)
	if !ok {
		pipeBuffered(dst, src)
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		pipeBuffered(dst, src)
		return
	}
	for {
		var buf *[]byte
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			buf = bufPool.Get().(*[]byte)
			for {
				n, rerr = syscall.Read(int(fd), *buf)
				if rerr != syscall.EINTR {
					break
				}
			}
			if rerr == syscall.EAGAIN {
				bufPool.Put(buf)
				buf = nil
				return false // wait until readable, holding nothing
			}
			return true
		})
		if err == nil && rerr == nil && n > 0 {
			_, err = dst.Write((*buf)[:n])
		}
		if buf != nil {
			bufPool.Put(buf)
		}
		if err != nil || rerr != nil || n <= 0 {
			return // an error, or the end of the stream (a read of 0)
		}
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, tunnelBuffer); return &b }}

// pipeBuffered is pipe for connections without a file descriptor.
func pipeBuffered(dst io.Writer, src io.Reader) {
	buf := make([]byte, tunnelBuffer)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// track registers an open tunnel, unless the relay is closed.
func (r *Relay) track(t *tunnel) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.tunnels[t] = struct{}{}
	r.open.Add(1)
	r.stats.Tunnels.Add(1)
	return true
}

func (r *Relay) untrack(t *tunnel) {
	r.mu.Lock()
	delete(r.tunnels, t)
	r.mu.Unlock()
	r.stats.Tunnels.Add(-1)
	r.open.Done()
}
