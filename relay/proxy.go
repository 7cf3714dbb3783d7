package relay

import (
	"context"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// hopHeaders are the headers of one connection, not of the request, which a
// relay must not pass on (RFC 9110, 7.6.1), besides those that Connection
// names.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// endToEnd copies h without the hop-by-hop headers.
func endToEnd(h http.Header) http.Header {
	out := h.Clone()
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				out.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		out.Del(name)
	}
	return out
}

// relayHTTP relays a polling request to target and its answer back. It
// returns false, having written nothing, when the owner did not answer.
func (r *Relay) relayHTTP(w http.ResponseWriter, req *http.Request, tag, target string) bool {
	// The request ends when its client goes, or when the relay closes.
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	stop := context.AfterFunc(r.ctx, cancel)
	defer stop()

	out := &http.Request{
		Method:     req.Method,
		URL:        &url.URL{Scheme: "http", Host: target, Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     endToEnd(req.Header),
		Host:       req.Host,
	}
	out.Header.Set(ForwardedHeader, "1")
	if req.Method == http.MethodPost {
		// The owner applies its own limit; what crosses to it stops one
		// byte past that limit, enough for the owner to refuse it (413)
		// as it would a request sent to it directly.
		out.Body = io.NopCloser(io.LimitReader(req.Body, r.opts.MaxPayload+1))
		out.ContentLength = req.ContentLength
		if req.ContentLength < 0 || req.ContentLength > r.opts.MaxPayload {
			out.ContentLength = -1 // chunked, cut by the limit above
		}
		if out.ContentLength == 0 {
			out.Body = http.NoBody
		}
	}
	out = out.WithContext(ctx)

	res, err := r.http.RoundTrip(out)
	if err != nil {
		switch {
		case req.Context().Err() != nil:
			return true // the client is gone: there is no one to answer
		case r.ctx.Err() == nil:
			r.unreachable(tag, target, err)
		}
		return false // the owner did not answer, or the relay closed
	}
	defer res.Body.Close()
	r.copyHeader(w.Header(), res.Header)
	w.WriteHeader(res.StatusCode)
	if _, err := io.Copy(w, res.Body); err != nil {
		// Headers are out: all that is left is to cut the answer short,
		// which the client sees as a failed request.
		r.logger.Debug("relay: answer cut short", "owner", target, "err", err)
		abort(w)
		return true
	}
	r.stats.Relayed.Add(1)
	return true
}

// isUpgrade reports a websocket upgrade request.
func isUpgrade(r *http.Request) bool {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	for _, v := range r.Header["Connection"] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}

// abort cuts the answer on w short, so that the client sees a failed request
// rather than a truncated body it might take for a whole one: the
// connection is taken over and closed.
func abort(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // what net/http does for the same end
	}
	_ = conn.Close()
}
