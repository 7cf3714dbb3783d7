package redis

// Connection state recovery across processes (Options.Recovery).
//
// Offsets. Redis assigns them: a stored broadcast is not PUBLISHed but
// sent through the writer as one EVAL of storeScript, which takes the next
// offset of the namespace's clock ("<ms>-<seq>", from Redis's TIME, never
// going back), appends it to the packet's arguments (spliced into the
// msgpack at the position the encoder reports: the message is then exactly
// what Node's adapter would write for the packet with one more argument),
// appends it to a list per room it is addressed to, and PUBLISHes it, all
// at once. So the order of the offsets is the order in which every
// subscriber receives the messages, and no handler waits for Redis: the
// writer pipelines the EVALs as it did the PUBLISHes.
//
// Delivery. Every process, this one included, delivers a stored broadcast
// when it comes back from the subscription, in that order: a socket is sent
// its stored packets in offset order, so the last offset its client handled
// says exactly what it had (a process that delivered its own broadcasts at
// once would interleave them differently). This costs this process's own
// recipients one trip to Redis and back. While Options.Publishing says
// Redis is away, a broadcast is delivered here at once, unstored.
//
// Storage, per namespace; every name starts with {Options.Recovery.Key},
// one hash tag, so that a Redis Cluster keeps it all on one node, the node
// through which the writer then sends everything (PUBLISHes included: one
// node, one order):
//
//	{…}#<nsp>#clock          the last offset assigned
//	{…}#<nsp>#s#<room>       a list of the broadcasts addressed to room
//	{…}#<nsp>#all            a list of those addressed to no room
//	{…}#<nsp>#t#<room>       the last entry trimmed from a list by count
//	{…}#<nsp>#session#<pid>  a session kept for the window
//	{…}#<nsp>#live#<uid>     a hash of the sessions connected to process uid
//	{…}#<nsp>#where          the process holding a connected session that
//	                         another process made (pid → uid)
//
// An entry is "<offset> <message>", the message as published. A list loses
// its entries older than the window (checked at its head on every append)
// and beyond MaxPackets (the trimmed mark records the last such entry, so
// that a session that missed it is not restored incompletely), and expires
// a window after its last entry. A list rather than a stream: most rooms
// (a user's) hold a few entries within a window, and Redis gives a stream
// a 4 KiB node from its first entry (stream-node-max-bytes) where a short
// list costs its entries (measured: 4,728 bytes for a stream of one
// 320-byte entry; the restore reads a room's whole list, at most
// MaxPackets entries, anyway).
//
// Sessions. A process writes a connected socket's session into its live
// hash (whose expiry it renews every renewEvery), moves it to a session key
// with the window as its expiry when the socket ends for a reason its
// client comes back from (persistScript, only if the live entry is still
// there: a session someone recovered is not brought back), and moves all
// of them at shutdown, before the connections close. A session is restored
// from its key, or from the live hash of a process that has no
// subscription left (killed: PUBSUB NUMSUB of its response channel is 0),
// so that a process killed with -9 loses only what was still in its
// writer's queue. A pid names the process that made it, whose live hash is
// looked in; a session recovered elsewhere keeps its pid (the client tells
// a recovery by it), so its holder also writes itself in the where hash.
// A restore claims the session (DEL or HDEL answering 1) before it uses
// it: one restore per session. The keepers renew the where hash and drop,
// a few at a time, its entries whose session is no longer live (their
// holder died and nobody came back for them).
//
// Who recognises offsets. A process that stores gets a uid starting with
// stampPrefix; a receiver reads the last argument of a broadcast as its
// offset only from such a uid, and only when the broadcast is not volatile.
// Broadcasts from Node's processes and the emitter carry no offset: they
// are delivered as before, and never replayed.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-rt/switchboard/socketio"
)

// RecoveryOptions configure connection state recovery. Zero values are
// the documented defaults.
type RecoveryOptions struct {
	// Window is how long a disconnected session, and the packets it
	// missed, are kept. Zero turns recovery off: nothing is stored, and the
	// wire is exactly Node's adapter's.
	Window time.Duration
	// MaxPackets bounds the packets kept per room (and for namespace-wide
	// broadcasts): 1000.
	MaxPackets int
	// Key starts the name of every key recovery keeps:
	// "switchboard-recovery".
	Key string
}

// stampPrefix starts the uid of a process whose broadcasts carry offsets.
// No uid of Node's (uid2) or of a process without recovery (randomID) has
// a dot.
const stampPrefix = "sbr."

// renewEvery is how often a process renews the expiry of its live hash; a
// live hash outlives its process by the window plus up to twice this.
const renewEvery = 10 * time.Second

// storeScript stamps, stores and publishes one broadcast.
// KEYS: clock, then a list and its trimmed mark per room.
// ARGV: the message without its offset, the byte at which the offset goes,
// the channel, MaxPackets, the window in milliseconds.
var storeScript = `
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = 0
local last = redis.call('GET', KEYS[1])
if last then
  local lms, lseq = string.match(last, '^(%d+)%-(%d+)$')
  if lms and ms <= tonumber(lms) then
    ms = tonumber(lms)
    seq = tonumber(lseq) + 1
  end
end
local id = string.format('%d-%d', ms, seq)
redis.call('SET', KEYS[1], id)
local hdr
if #id < 32 then hdr = string.char(160 + #id) else hdr = string.char(217, #id) end
local pos = tonumber(ARGV[2])
local msg = string.sub(ARGV[1], 1, pos) .. hdr .. id .. string.sub(ARGV[1], pos + 1)
local max = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local oldest = ms - window
for i = 2, #KEYS, 2 do
  local n = redis.call('RPUSH', KEYS[i], id .. ' ' .. msg)
  redis.call('PEXPIRE', KEYS[i], window)
  if n > max then
    local cut = redis.call('LRANGE', KEYS[i], n - max - 1, n - max - 1)
    redis.call('LTRIM', KEYS[i], n - max, -1)
    redis.call('SET', KEYS[i + 1], string.match(cut[1], '^%S+'), 'PX', window)
  end
  while true do
    local head = redis.call('LINDEX', KEYS[i], 0)
    if not head or tonumber(string.match(head, '^(%d+)')) >= oldest then break end
    redis.call('LPOP', KEYS[i])
  end
end
redis.call('PUBLISH', ARGV[3], msg)
return id
`

// liveScript records a connected session. KEYS: the live hash, the where
// hash. ARGV: pid, session, the hashes' expiry in milliseconds, this
// process's uid when another process made the pid (else "").
var liveScript = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return 1
`

// persistScript keeps a session for the window, unless it has left the
// live hash meanwhile (recovered elsewhere), or unconditionally when
// ARGV[4] is 1 (shutdown); and forgets where it was. KEYS: the live hash,
// the session key, the where hash. ARGV: pid, session, the window in
// milliseconds, force, this process's uid.
var persistScript = `
local kept = redis.call('HDEL', KEYS[1], ARGV[1]) == 1 or ARGV[4] == '1'
if redis.call('HGET', KEYS[3], ARGV[1]) == ARGV[5] then redis.call('HDEL', KEYS[3], ARGV[1]) end
if kept then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
`

// dropScript forgets a connected session. KEYS: the live hash, the where
// hash. ARGV: pid, this process's uid.
var dropScript = `
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
return 1
`

// claimScript takes a session for a restore: from its key or from its
// holder's live hash; 1 if it was there. KEYS: the session key, the live
// hash, the where hash. ARGV: pid.
var claimScript = `
if redis.call('DEL', KEYS[1]) == 1 or redis.call('HDEL', KEYS[2], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[3], ARGV[1])
  return 1
end
return 0
`

// pruneScript drops an entry of the where hash whose session is no longer
// in its holder's live hash. KEYS: the where hash, the holder's live hash.
// ARGV: pid, the holder's uid.
var pruneScript = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`

func (o *RecoveryOptions) setDefaults() {
	if o.MaxPackets <= 0 {
		o.MaxPackets = 1000
	}
	if o.Key == "" {
		o.Key = "switchboard-recovery"
	}
}

func (c *Classic) recovering() bool { return c.opts.Recovery.Window > 0 }

// recoveryKeys are a namespace's key names.
type recoveryKeys struct{ base string }

func newRecoveryKeys(key, nsp string) recoveryKeys {
	return recoveryKeys{base: recoveryTag(key) + "#" + nsp + "#"}
}

// recoveryTag is the hash tag every recovery key starts with.
func recoveryTag(key string) string { return "{" + key + "}" }

func (k recoveryKeys) clock() string             { return k.base + "clock" }
func (k recoveryKeys) session(pid string) string { return k.base + "session#" + pid }
func (k recoveryKeys) live(uid string) string    { return k.base + "live#" + uid }
func (k recoveryKeys) where() string             { return k.base + "where" }

// list and trimmed name a room's list and its mark; "" is the
// namespace's.
func (k recoveryKeys) list(room string) string {
	if room == "" {
		return k.base + "all"
	}
	return k.base + "s#" + room
}

func (k recoveryKeys) trimmed(room string) string {
	if room == "" {
		return k.base + "tall"
	}
	return k.base + "t#" + room
}

func (c *Classic) windowMs() int64 { return c.opts.Recovery.Window.Milliseconds() }

// ------------------------------------------------------------ storing ---

// encodeStored writes a broadcast as encodeBroadcast does, with room for
// one more argument, and returns the byte at which the offset goes.
func encodeStored(uid, nsp string, p *socketio.Packet, rooms, except []string, flags socketio.BroadcastFlags) ([]byte, int, error) {
	args, _ := p.Data.([]any)
	b := appendMsgpackLen(nil, 3, 0x90, 0xdc)
	b = appendMsgpackString(b, uid)
	b = appendMsgpackLen(b, 3, 0x80, 0xde)
	b = appendMsgpackString(b, "type")
	b = appendMsgpackInt(b, int64(socketio.PacketEvent))
	b = appendMsgpackString(b, "data")
	b = appendMsgpackLen(b, len(args)+1, 0x90, 0xdc)
	for _, v := range args {
		var err error
		if b, err = appendMsgpackDepth(b, v, 3); err != nil {
			return nil, 0, err
		}
	}
	pos := len(b)
	b = appendMsgpackString(b, "nsp")
	b = appendMsgpackString(b, nsp)
	b, err := appendMsgpack(b, optsFields(rooms, except, flags))
	return b, pos, err
}

// broadcastStored sends a storable broadcast through storeScript; this
// process's sockets get it when it comes back. While Redis is away (or the
// queue is full) it is delivered here at once, unstored.
func (a *adapter) broadcastStored(p *socketio.Packet, opts *socketio.BroadcastOptions) error {
	c := a.c
	down := c.opts.Publishing != nil && !c.opts.Publishing()
	if down && c.w.box == nil {
		c.cnt.skipped.Add(1)
		return a.mem.Broadcast(p, opts)
	}
	if down || c.w.box != nil && !c.Subscribed() {
		// Redis is away (or this process's subscription is, and with it
		// the echo this process's sockets would get the broadcast from).
		// The outbox publishes it when Redis is back, unstored: this
		// process's sockets get it now, and ignore its echo (a broadcast
		// without an offset from this process), as the others would a
		// packet they missed.
		rooms, except := unique(opts.Rooms), unique(opts.Except)
		payload, err := encodeBroadcast(c.uid, a.name, p, rooms, except, opts.Flags)
		if err != nil {
			return fmt.Errorf("redis adapter: encode broadcast: %w", err)
		}
		_, perr := c.publish(kindBroadcast, a.broadcastChannel(rooms), payload)
		return errors.Join(a.mem.Broadcast(p, opts), perr)
	}
	rooms, except := unique(opts.Rooms), unique(opts.Except)
	payload, pos, err := encodeStored(c.uid, a.name, p, rooms, except, opts.Flags)
	if err != nil {
		return fmt.Errorf("redis adapter: encode broadcast: %w", err)
	}
	targets := rooms
	if len(targets) == 0 {
		targets = []string{""}
	}
	keys := make([]string, 0, 1+2*len(targets))
	keys = append(keys, a.keys.clock())
	for _, r := range targets {
		keys = append(keys, a.keys.list(r), a.keys.trimmed(r))
	}
	channel := a.broadcastChannel(rooms)
	args := []any{payload, pos, channel, c.opts.Recovery.MaxPackets, c.windowMs()}
	err = c.w.enqueue(outMsg{kind: kindBroadcast, channel: channel, payload: payload,
		cmd: func(ctx context.Context, pipe goredis.Pipeliner) { pipe.Eval(ctx, storeScript, keys, args...) },
		failed: func(err error) {
			// Redis went away before the probe said so: this process's
			// sockets still get what surely did not reach anyone.
			if unsent(err) {
				_ = a.mem.Broadcast(p, opts)
			}
		}})
	if err != nil {
		c.cnt.dropped.Add(1)
		err = fmt.Errorf("redis adapter: publish to %s: %w", channel, err)
		c.reportError(err)
		_ = a.mem.Broadcast(p, opts) // not coming back: this process's sockets still get it
		return err
	}
	return nil
}

// unsent reports whether a command that failed surely never ran: no
// connection could be had, or Redis answered with an error (the store
// script publishes last). After a timeout it may have run.
func unsent(err error) bool {
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, goredis.ErrPoolTimeout) || errors.Is(err, goredis.ErrClosed) ||
		errors.Is(err, ErrOutboxOverflow)
}

// onStoredBroadcast delivers a broadcast from a process that stores (this
// one included); false if it is not stored after all (volatile), for the
// caller to deliver as any other.
func (a *adapter) onStoredBroadcast(p *socketio.Packet, opts *socketio.BroadcastOptions) bool {
	if opts.Flags.Volatile {
		return false
	}
	args, _ := p.Data.([]any)
	s, _ := args[len(args)-1].(string)
	off, ok := socketio.ParseOffset(s)
	if !ok {
		return false
	}
	msgs, err := socketio.EncodePacket(p)
	if err != nil {
		a.malformed("broadcast", err)
		return true
	}
	a.mem.DeliverStored(msgs, opts, off)
	return true
}

// ----------------------------------------------------------- sessions ---

// Recovering implements socketio.SessionAdapter.
func (a *adapter) Recovering() bool { return a.c.recovering() && !a.detached }

// LastOffset implements socketio.SessionAdapter.
func (a *adapter) LastOffset() socketio.Offset { return a.mem.LastOffset() }

// NewSessionID implements socketio.SessionAdapter: this process's uid, a
// dot, and 20 random characters (the uid finds the live hash).
func (a *adapter) NewSessionID() string { return a.c.uid + "." + randomID(20) }

// pidUID returns the uid of the process that made pid; false for a pid
// that none of ours could be.
func pidUID(pid string) (string, bool) {
	i := strings.LastIndexByte(pid, '.')
	if i <= 0 || len(pid)-i-1 != 20 || len(pid) > 64 || !strings.HasPrefix(pid, stampPrefix) {
		return "", false
	}
	for _, r := range pid {
		if !(r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return "", false
		}
	}
	return pid[:i], true
}

func (a *adapter) enqueueSession(cmd func(ctx context.Context, pipe goredis.Pipeliner)) {
	if err := a.c.w.enqueue(outMsg{kind: kindSession, cmd: cmd}); err != nil {
		a.c.cnt.dropped.Add(1)
		a.c.reportError(fmt.Errorf("redis adapter: session write: %w", err))
	}
}

// SaveSession implements socketio.SessionAdapter: the live hash (and the
// where hash for a pid another process made).
func (a *adapter) SaveSession(sess socketio.Session) {
	rec, err := json.Marshal(sess)
	if err != nil {
		return
	}
	keys := []string{a.keys.live(a.c.uid), a.keys.where()}
	ttl := (a.c.opts.Recovery.Window + 2*renewEvery).Milliseconds()
	holder := ""
	if uid, _ := pidUID(sess.PID); uid != a.c.uid {
		holder = a.c.uid
	}
	a.enqueueSession(func(ctx context.Context, pipe goredis.Pipeliner) {
		pipe.Eval(ctx, liveScript, keys, sess.PID, rec, ttl, holder)
	})
}

// EndSession implements socketio.SessionAdapter.
func (a *adapter) EndSession(sess socketio.Session, keep bool) {
	live, where := a.keys.live(a.c.uid), a.keys.where()
	if !keep {
		a.enqueueSession(func(ctx context.Context, pipe goredis.Pipeliner) {
			pipe.Eval(ctx, dropScript, []string{live, where}, sess.PID, a.c.uid)
		})
		return
	}
	rec, err := json.Marshal(sess)
	if err != nil {
		return
	}
	keys := []string{live, a.keys.session(sess.PID), where}
	window := a.c.windowMs()
	a.enqueueSession(func(ctx context.Context, pipe goredis.Pipeliner) {
		pipe.Eval(ctx, persistScript, keys, sess.PID, rec, window, 0, a.c.uid)
	})
}

// SaveSessions implements socketio.SessionAdapter: at once, in pipelines
// of 512, waiting for Redis.
func (a *adapter) SaveSessions(ctx context.Context, sessions []socketio.Session) error {
	if a.c.opts.Publishing != nil && !a.c.opts.Publishing() {
		return ErrUnavailable // not worth a shutdown's time
	}
	live := a.keys.live(a.c.uid)
	window := a.c.windowMs()
	for chunk := range slices.Chunk(sessions, 512) {
		pipe := a.c.pub.Pipeline()
		for _, sess := range chunk {
			rec, err := json.Marshal(sess)
			if err != nil {
				continue
			}
			pipe.Eval(ctx, persistScript, []string{live, a.keys.session(sess.PID), a.keys.where()}, sess.PID, rec, window, 1, a.c.uid)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("redis adapter: keep sessions: %w", err)
		}
		a.c.cnt.published[kindSession].Add(uint64(len(chunk)))
	}
	return nil
}

// renew keeps this process's live hashes and the where hashes from
// expiring, and prunes the where hashes (the keeper).
func (c *Classic) renew() {
	defer c.wg.Done()
	t := time.NewTicker(renewEvery)
	defer t.Stop()
	ttl := c.opts.Recovery.Window + 2*renewEvery
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		keys := make([]recoveryKeys, 0, len(c.byName))
		for _, a := range c.byName {
			keys = append(keys, a.keys)
		}
		c.mu.Unlock()
		for _, k := range keys {
			if err := c.w.enqueue(outMsg{kind: kindSession, cmd: func(ctx context.Context, pipe goredis.Pipeliner) {
				pipe.Eval(ctx, `for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ARGV[1]) end return 1`,
					[]string{k.live(c.uid), k.where()}, ttl.Milliseconds())
			}}); err != nil {
				c.reportError(fmt.Errorf("redis adapter: renew live sessions: %w", err))
			}
			c.prune(k)
		}
	}
}

// prune drops up to 16 entries, picked at random, of a where hash whose
// session is no longer live.
func (c *Classic) prune(k recoveryKeys) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.PublishTimeout)
	defer cancel()
	if c.opts.Publishing != nil && !c.opts.Publishing() {
		return
	}
	pairs, err := c.pub.HRandFieldWithValues(ctx, k.where(), 16).Result()
	if err != nil || len(pairs) == 0 {
		return
	}
	pipe := c.pub.Pipeline()
	for _, p := range pairs {
		pipe.Eval(ctx, pruneScript, []string{k.where(), k.live(p.Value)}, p.Key, p.Value)
	}
	_, _ = pipe.Exec(ctx)
}

// ------------------------------------------------------------ restore ---

// RestoreSession implements socketio.SessionAdapter, on a goroutine of its
// own (bounded by RequestsTimeout; Close waits for it).
func (a *adapter) RestoreSession(r *socketio.Restore) {
	c := a.c
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		r.Done(socketio.RestoreResult{Outcome: socketio.RecoveryFailed, Err: ErrClosed})
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.RequestsTimeout)
		defer cancel()
		r.Done(a.restore(ctx, r))
	}()
}

func failed(err error) socketio.RestoreResult {
	return socketio.RestoreResult{Outcome: socketio.RecoveryFailed, Err: fmt.Errorf("redis adapter: restore session: %w", err)}
}

func (a *adapter) restore(ctx context.Context, r *socketio.Restore) socketio.RestoreResult {
	uid, ok := pidUID(r.PID)
	if !ok {
		return socketio.RestoreResult{Outcome: socketio.RecoveryInvalid}
	}
	var off socketio.Offset
	if r.Offset != "" {
		if off, ok = socketio.ParseOffset(r.Offset); !ok {
			return socketio.RestoreResult{Outcome: socketio.RecoveryInvalid}
		}
	}
	// Find the session: kept, or live on a process that is gone.
	sessKey, liveKey := a.keys.session(r.PID), a.keys.live(uid)
	pipe := a.c.pub.Pipeline()
	kept := pipe.Get(ctx, sessKey)
	live := pipe.HGet(ctx, liveKey, r.PID)
	where := pipe.HGet(ctx, a.keys.where(), r.PID)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return failed(err)
	}
	rec, connected := kept.Val(), live.Val()
	if holder := where.Val(); rec == "" && holder != "" && holder != uid {
		// Recovered by another process, which holds it now.
		uid, liveKey = holder, a.keys.live(holder)
		var err error
		if connected, err = a.c.pub.HGet(ctx, liveKey, r.PID).Result(); err != nil && !errors.Is(err, goredis.Nil) {
			return failed(err)
		}
	}
	if rec == "" && connected != "" {
		// Connected on process uid: restorable only once that process is
		// gone (its response channel has no subscriber left, on any node).
		owner := a.c.opts.Key + "-response#" + a.name + "#" + uid + "#"
		n, err := countSubscribers(ctx, a.c.pub, false, owner)
		if err != nil {
			return failed(err)
		}
		if n == 0 {
			rec = connected
		}
	}
	if rec == "" {
		return socketio.RestoreResult{Outcome: socketio.RecoveryExpired}
	}
	var sess socketio.Session
	if err := json.Unmarshal([]byte(rec), &sess); err != nil || sess.SID == "" {
		return socketio.RestoreResult{Outcome: socketio.RecoveryExpired}
	}
	sess.PID = r.PID
	if sess.Owner != r.Owner {
		return socketio.RestoreResult{Outcome: socketio.RecoveryRefused}
	}

	// Join first: what is stored after the read below reaches the socket
	// live.
	rooms := append(r.Join(sess.Rooms), sess.SID)
	from, check := sess.Start, false
	if r.Offset != "" && sess.Start.Before(off) {
		from, check = off, true
	}
	targets := append(slices.Clone(rooms), "")
	pipe = a.c.pub.Pipeline()
	claim := pipe.Eval(ctx, claimScript, []string{sessKey, liveKey, a.keys.where()}, r.PID)
	marks := make([]*goredis.StringCmd, len(targets))
	reads := make([]*goredis.StringSliceCmd, len(targets))
	for i, room := range targets {
		marks[i] = pipe.Get(ctx, a.keys.trimmed(room))
		reads[i] = pipe.LRange(ctx, a.keys.list(room), 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return failed(err)
	}
	if n, _ := claim.Int(); n != 1 {
		return socketio.RestoreResult{Outcome: socketio.RecoveryExpired} // restored by someone else meanwhile
	}
	found := !check
	for _, m := range marks {
		mark, ok := socketio.ParseOffset(m.Val())
		if !ok {
			continue
		}
		if from.Before(mark) {
			return socketio.RestoreResult{Outcome: socketio.RecoveryExpired} // some of what it missed is gone
		}
		found = found || mark == from
	}
	type entry struct {
		off socketio.Offset
		msg string
	}
	var entries []entry
	floor := from
	for _, rd := range reads {
		for _, x := range rd.Val() {
			id, msg, _ := strings.Cut(x, " ")
			o, ok := socketio.ParseOffset(id)
			switch {
			case !ok || o.Before(from):
				continue
			case o == from:
				found = true
				continue
			}
			if floor.Before(o) {
				floor = o
			}
			entries = append(entries, entry{o, msg})
		}
	}
	if !found {
		if int64(from.Millis) < time.Now().Add(-a.c.opts.Recovery.Window).UnixMilli() {
			return socketio.RestoreResult{Outcome: socketio.RecoveryExpired}
		}
		return socketio.RestoreResult{Outcome: socketio.RecoveryInvalid} // not an offset the session was sent
	}
	slices.SortFunc(entries, func(x, y entry) int {
		switch {
		case x.off.Before(y.off):
			return -1
		case y.off.Before(x.off):
			return 1
		}
		return 0
	})
	entries = slices.CompactFunc(entries, func(x, y entry) bool { return x.off == y.off })
	missed := make([]socketio.StoredPacket, 0, len(entries))
	for _, e := range entries {
		p, opts, ok := a.decodeStored(e.msg)
		if !ok || excluded(opts.Except, rooms) {
			continue
		}
		msgs, err := socketio.EncodePacket(p)
		if err != nil {
			continue
		}
		missed = append(missed, socketio.StoredPacket{Offset: e.off, Msgs: msgs})
	}
	return socketio.RestoreResult{Outcome: socketio.Recovered, Session: sess, Missed: missed, Floor: floor}
}

// decodeStored reads a stored entry's message (as it was published).
func (a *adapter) decodeStored(payload string) (*socketio.Packet, socketio.BroadcastOptions, bool) {
	v, err := decodeMsgpack(payload)
	if err != nil {
		a.malformed("stored broadcast", err)
		return nil, socketio.BroadcastOptions{}, false
	}
	msg, ok := v.([]any)
	if !ok || len(msg) < 3 {
		a.malformed("stored broadcast", fmt.Errorf("not an array of 3: %T", v))
		return nil, socketio.BroadcastOptions{}, false
	}
	p, ok := a.packetFrom(msg[1])
	if !ok {
		return nil, socketio.BroadcastOptions{}, false
	}
	return p, optsFrom(msg[2]), true
}

func excluded(except, rooms []string) bool {
	for _, r := range except {
		if slices.Contains(rooms, r) {
			return true
		}
	}
	return false
}

// stamps reports whether uid's broadcasts carry offsets.
func stamps(uid string) bool { return strings.HasPrefix(uid, stampPrefix) }
