package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/socketio"
)

// Request types between processes, numbered as Node numbers them. Requests
// are JSON, except a broadcast with acknowledgements (msgpack, it may
// carry binary data); of the answers, the acknowledgements are msgpack and
// the rest JSON. A reader tells them apart by the first byte, '{'.
const (
	reqSockets               = 0 // socket ids in rooms (adapters before 7.0 ask it)
	reqAllRooms              = 1
	reqRemoteJoin            = 2
	reqRemoteLeave           = 3
	reqRemoteDisconnect      = 4
	reqRemoteFetch           = 5
	reqServerSideEmit        = 6 // answered only when it has a requestId
	reqBroadcast             = 7 // a broadcast with acknowledgements
	respBroadcastClientCount = 8
	respBroadcastAck         = 9
)

// jsonRequest is a request as Node writes it; the field order is Node's.
type jsonRequest struct {
	UID       string    `json:"uid"`
	RequestID string    `json:"requestId,omitempty"`
	Type      int       `json:"type"`
	Opts      *jsonOpts `json:"opts,omitempty"`
	Rooms     any       `json:"rooms,omitempty"`
	Close     any       `json:"close,omitempty"`
	Data      any       `json:"data,omitempty"`
}

type jsonOpts struct {
	Rooms  []string `json:"rooms"`
	Except []string `json:"except"`
}

func jsonOptsOf(opts *socketio.BroadcastOptions) *jsonOpts {
	return &jsonOpts{Rooms: nonNil(unique(opts.Rooms)), Except: nonNil(unique(opts.Except))}
}

// jsonResponse is an answer as Node writes it; the field order is Node's
// (type first when there is one).
type jsonResponse struct {
	Type        any `json:"type,omitempty"`
	RequestID   any `json:"requestId"`
	Sockets     any `json:"sockets,omitempty"`
	Rooms       any `json:"rooms,omitempty"`
	Data        any `json:"data,omitempty"`
	ClientCount any `json:"clientCount,omitempty"`
}

// marshalJSON encodes v as JSON.stringify would: no HTML escaping.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// decodeMessage decodes a request or an answer: JSON when it starts with
// '{', msgpack otherwise.
func decodeMessage(payload string) (map[string]any, error) {
	var v any
	if strings.HasPrefix(payload, "{") {
		if err := json.Unmarshal([]byte(payload), &v); err != nil {
			return nil, err
		}
	} else {
		var err error
		if v, err = decodeMsgpack(payload); err != nil {
			return nil, err
		}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not an object: %T", v)
	}
	return m, nil
}

// ------------------------------------------------ another process asks ---

// onRequest answers a request from another process (deliverer). Every
// type Node answers is answered: a process that stays silent makes Node's
// callers wait out their timeout.
func (a *adapter) onRequest(payload string) {
	req, err := decodeMessage(payload)
	if err != nil {
		a.malformed("request", err)
		return
	}
	typ, ok := req["type"].(float64)
	if !ok {
		a.malformed("request", fmt.Errorf("type %v", req["type"]))
		return
	}
	uid, _ := req["uid"].(string)
	if uid == a.c.uid {
		// This process's own request: joins, leaves and disconnects were
		// applied here when asked; the rest is answered from local state.
		a.c.cnt.ignored.Add(1)
		return
	}
	rid, hasID := req["requestId"]
	switch int(typ) {
	case reqSockets:
		ids := []string{}
		a.mem.Apply(&socketio.BroadcastOptions{Rooms: roomList(req["rooms"])}, func(s *socketio.Socket) {
			ids = append(ids, s.ID())
		})
		a.respond(uid, jsonResponse{RequestID: rid, Sockets: ids})
	case reqAllRooms:
		a.respond(uid, jsonResponse{RequestID: rid, Rooms: a.mem.Rooms()})
	case reqRemoteJoin, reqRemoteLeave, reqRemoteDisconnect:
		a.onRemoteSockets(int(typ), uid, rid, req)
	case reqRemoteFetch:
		opts := optsFrom(req["opts"])
		opts.Flags = socketio.BroadcastFlags{}
		infos, _ := a.mem.FetchSockets(context.Background(), &opts)
		if infos == nil {
			infos = []socketio.SocketInfo{}
		}
		a.respond(uid, jsonResponse{RequestID: rid, Sockets: infos})
	case reqServerSideEmit:
		a.onServerSideEmit(rid, hasID, req["data"])
	case reqBroadcast:
		a.onBroadcastWithAck(uid, rid, req)
	default:
		a.c.cnt.ignored.Add(1)
	}
}

// onRemoteSockets applies a join, leave or disconnect: to the sockets opts
// selects, or (adapters before 7.0) to the one socket sid, answered.
func (a *adapter) onRemoteSockets(typ int, uid string, rid any, req map[string]any) {
	if req["opts"] != nil {
		opts := optsFrom(req["opts"])
		opts.Flags = socketio.BroadcastFlags{}
		ctx := context.Background()
		switch typ {
		case reqRemoteJoin:
			_ = a.mem.AddSockets(ctx, &opts, roomList(req["rooms"]))
		case reqRemoteLeave:
			_ = a.mem.DelSockets(ctx, &opts, roomList(req["rooms"]))
		case reqRemoteDisconnect:
			closeConn, _ := req["close"].(bool)
			_ = a.mem.DisconnectSockets(ctx, &opts, closeConn)
		}
		return
	}
	sid, _ := req["sid"].(string)
	s := a.nsp.Socket(sid)
	if s == nil {
		a.c.cnt.ignored.Add(1)
		return
	}
	room, _ := req["room"].(string)
	switch typ {
	case reqRemoteJoin:
		s.Join(room)
	case reqRemoteLeave:
		s.Leave(room)
	case reqRemoteDisconnect:
		closeConn, _ := req["close"].(bool)
		s.Disconnect(closeConn)
	}
	a.respond(uid, jsonResponse{RequestID: rid})
}

// onServerSideEmit hands an event to the namespace's handlers; with a
// requestId, the first answer goes back (always to the shared response
// channel, as Node sends it).
func (a *adapter) onServerSideEmit(rid any, withAck bool, data any) {
	args, ok := data.([]any)
	if !ok {
		a.malformed("serverSideEmit", fmt.Errorf("data %T", data))
		return
	}
	if !withAck {
		a.nsp.HandleServerSideEmit(args, nil)
		return
	}
	var answered atomic.Bool
	a.nsp.HandleServerSideEmit(args, func(arg any) {
		if answered.Swap(true) {
			return // only one answer is expected
		}
		payload, err := marshalJSON(jsonResponse{Type: reqServerSideEmit, RequestID: rid, Data: arg})
		if err != nil {
			a.c.reportError(fmt.Errorf("redis adapter: encode serverSideEmit answer: %w", err))
			return
		}
		_, _ = a.c.publish(kindResponse, a.respCh, payload)
	})
}

// onBroadcastWithAck delivers a broadcast whose acknowledgements the
// sender waits for: first the number of clients reached, then each
// acknowledgement (its first argument, as Node forwards it).
func (a *adapter) onBroadcastWithAck(uid string, rid any, req map[string]any) {
	p, ok := a.packetFrom(req["packet"])
	if !ok {
		return
	}
	opts := optsFrom(req["opts"])
	opts.Flags.Local = false
	if opts.Flags.Timeout <= 0 {
		// Node waits for ever; a bound keeps an unanswered ack from
		// holding the socket's state until it disconnects.
		opts.Flags.Timeout = a.c.opts.RequestsTimeout
	}
	_ = a.mem.BroadcastWithAck(p, &opts, func(n int) {
		a.respond(uid, jsonResponse{Type: respBroadcastClientCount, RequestID: rid, ClientCount: n})
	}, func(args []any) {
		payload, err := encodeBroadcastAck(rid, args)
		if err != nil {
			a.c.reportError(fmt.Errorf("redis adapter: encode acknowledgement: %w", err))
			return
		}
		a.publishResponse(uid, payload)
	})
}

// encodeBroadcastAck writes one client's acknowledgement as Node's
// adapter does: {type: 9, requestId, packet: its first argument}, without
// packet when there is none (JavaScript's undefined).
func encodeBroadcastAck(rid any, args []any) ([]byte, error) {
	resp := mpMap{{"type", respBroadcastAck}, {"requestId", rid}}
	if len(args) > 0 {
		resp = append(resp, mpField{"packet", args[0]})
	}
	return appendMsgpack(nil, resp)
}

// respond sends a JSON answer to the process uid.
func (a *adapter) respond(uid string, resp jsonResponse) {
	payload, err := marshalJSON(resp)
	if err != nil {
		a.c.reportError(fmt.Errorf("redis adapter: encode answer: %w", err))
		return
	}
	a.publishResponse(uid, payload)
}

func (a *adapter) publishResponse(uid string, payload []byte) {
	ch := a.respCh
	if a.c.opts.PublishOnSpecificResponseChannel && uid != "" {
		ch = a.respCh + uid + "#"
	}
	_, _ = a.c.publish(kindResponse, ch, payload)
}

// ---------------------------------------------------- this process asks ---

// pendingRequest collects the answers to one of this process's requests;
// guarded by the adapter's mu.
type pendingRequest struct {
	typ       int
	numSub    int // processes expected to answer (this one included for fetches and rooms)
	msgCount  int // answers counted (this process's own for fetches and rooms)
	sockets   []socketio.SocketInfo
	rooms     []string
	seen      map[string]struct{}
	responses []any
	done      chan struct{} // closed when complete
}

// tell publishes a request that gets no answer.
func (a *adapter) tell(req jsonRequest) error {
	payload, err := marshalJSON(req)
	if err != nil {
		return fmt.Errorf("redis adapter: encode request: %w", err)
	}
	_, err = a.c.publish(kindRequest, a.reqCh, payload)
	return err
}

// ask publishes a request and waits until pr is complete, RequestsTimeout
// passes, ctx ends or the adapter closes. On a timeout pr keeps what came.
func (a *adapter) ask(ctx context.Context, what, rid string, pr *pendingRequest, req jsonRequest) error {
	payload, err := marshalJSON(req)
	if err != nil {
		return fmt.Errorf("redis adapter: encode %s request: %w", what, err)
	}
	pr.done = make(chan struct{})
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	a.requests[rid] = pr
	a.mu.Unlock()
	// From here on pr is the receiver's until it is out of the map.
	forget := func() {
		a.mu.Lock()
		delete(a.requests, rid)
		a.mu.Unlock()
	}
	skipped, err := a.c.publish(kindRequest, a.reqCh, payload)
	if err != nil || skipped {
		forget()
		if skipped {
			return fmt.Errorf("redis adapter: %s: %w", what, ErrUnavailable)
		}
		return err
	}
	t := time.NewTimer(a.c.opts.RequestsTimeout)
	defer t.Stop()
	select {
	case <-pr.done:
		forget()
		return nil
	case <-t.C:
		err = socketio.ErrTimeout
	case <-ctx.Done():
		err = ctx.Err()
	case <-a.closing:
		err = ErrClosed
	case <-a.c.stop:
		err = ErrClosed
	}
	forget()
	got, want := pr.msgCount, pr.numSub
	if pr.typ == reqServerSideEmit {
		got = len(pr.responses)
	}
	return fmt.Errorf("redis adapter: %s: %d of %d answers: %w", what, got, want, err)
}

// onResponse takes an answer to one of this process's requests (receiver).
func (a *adapter) onResponse(payload string) {
	resp, err := decodeMessage(payload)
	if err != nil {
		a.malformed("response", err)
		return
	}
	rid, _ := resp["requestId"].(string)
	a.mu.Lock()
	if ar := a.acks[rid]; ar != nil {
		a.mu.Unlock()
		switch typ, _ := resp["type"].(float64); typ {
		case respBroadcastClientCount:
			n, _ := resp["clientCount"].(float64)
			ar.clientCount(int(n))
		case respBroadcastAck:
			args := []any{}
			if p, ok := resp["packet"]; ok {
				args = append(args, p)
			}
			ar.ack(args)
		}
		return
	}
	pr := a.requests[rid]
	if pr == nil {
		a.mu.Unlock()
		a.c.cnt.ignored.Add(1) // another process's request, or too late
		return
	}
	complete := false
	switch pr.typ {
	case reqRemoteFetch:
		pr.msgCount++
		list, _ := resp["sockets"].([]any)
		for _, v := range list {
			if info, ok := socketInfoFrom(v); ok {
				pr.sockets = append(pr.sockets, info)
			}
		}
		complete = pr.msgCount == pr.numSub
	case reqAllRooms:
		pr.msgCount++
		for _, r := range roomList(resp["rooms"]) {
			if _, dup := pr.seen[r]; !dup {
				pr.seen[r] = struct{}{}
				pr.rooms = append(pr.rooms, r)
			}
		}
		complete = pr.msgCount == pr.numSub
	case reqServerSideEmit:
		pr.responses = append(pr.responses, resp["data"])
		complete = len(pr.responses) == pr.numSub
	}
	if complete {
		select {
		case <-pr.done:
		default:
			close(pr.done)
		}
	}
	a.mu.Unlock()
}

// socketInfoFrom reads a socket another process describes, tolerating
// Node's shapes (a header or a query parameter may be an array).
func socketInfoFrom(v any) (socketio.SocketInfo, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return socketio.SocketInfo{}, false
	}
	id, ok := m["id"].(string)
	if !ok {
		return socketio.SocketInfo{}, false
	}
	info := socketio.SocketInfo{ID: id, Rooms: roomList(m["rooms"]), Data: m["data"]}
	if h, ok := m["handshake"].(map[string]any); ok {
		hs := &info.Handshake
		hs.Headers = stringMap(h["headers"])
		hs.Time, _ = h["time"].(string)
		hs.Address, _ = h["address"].(string)
		hs.XDomain, _ = h["xdomain"].(bool)
		hs.Secure, _ = h["secure"].(bool)
		if issued, ok := h["issued"].(float64); ok {
			hs.Issued = int64(issued)
		}
		hs.URL, _ = h["url"].(string)
		hs.Query = stringMap(h["query"])
		hs.Auth, _ = h["auth"].(map[string]any)
	}
	return info, true
}

// stringMap reads an object of strings; an array is joined as Node joins
// repeated headers, a number or boolean written as JavaScript would.
func stringMap(v any) map[string]string {
	m, _ := v.(map[string]any)
	out := make(map[string]string, len(m))
	for k, e := range m {
		if s, ok := jsString(e); ok {
			out[k] = s
		}
	}
	return out
}

func jsString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case float64:
		return jsNumber(v), true
	case bool:
		return strconv.FormatBool(v), true
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := jsString(e); ok {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, ", "), true
	}
	return "", false
}
