package main

import (
	"sync"
	"time"
)

// msgRecord is one sent message and the devices that must each receive it
// exactly once.
type msgRecord struct {
	sent         time.Time
	step         int
	senderTarget int
	expect       []int32 // device indexes: the recipient's, then the sender's others
	got          []uint8 // receptions, parallel to expect
	nTo          int32   // how many of expect are the recipient's devices
}

// stepTally is what one rate step observed.
type stepTally struct {
	sent, sendErrors                 int
	expected, received               int
	duplicated, unexpected           int
	same, cross, acks                []time.Duration
	ackOK                            int
	ackErrors                        map[string]int
	firstSend, lastSend, lastReceipt time.Time
}

// tracker does the exactly-once bookkeeping for every delivery.
type tracker struct {
	devTarget []int // target of each device; fixed before sending

	mu          sync.Mutex
	msgs        []msgRecord
	steps       []*stepTally
	otherEvents map[string]int
	unknown     int // deliveries of a sequence number never sent
}

func newTracker(devTarget []int) *tracker {
	return &tracker{devTarget: devTarget, otherEvents: make(map[string]int)}
}

func (t *tracker) beginStep() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.steps = append(t.steps, &stepTally{ackErrors: make(map[string]int)})
	return len(t.steps) - 1
}

// register records a message about to be written by sender and returns its
// sequence number and send time.
// The first nTo devices of expect are the recipient's.
func (t *tracker) register(step, sender int, expect []int32, nTo int) (int, time.Time) {
	got := make([]uint8, len(expect))
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	seq := len(t.msgs)
	t.msgs = append(t.msgs, msgRecord{sent: now, step: step, senderTarget: t.devTarget[sender], expect: expect, got: got, nTo: int32(nTo)})
	st := t.steps[step]
	st.sent++
	st.expected += len(expect)
	if st.firstSend.IsZero() {
		st.firstSend = now
	}
	st.lastSend = now
	return seq, now
}

// unsend forgets a message whose write failed.
func (t *tracker) unsend(seq int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := &t.msgs[seq]
	st := t.steps[m.step]
	st.sent--
	st.sendErrors++
	st.expected -= len(m.expect)
	m.expect, m.got = nil, nil
}

func (t *tracker) delivery(d *device, seq int, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq < 0 || seq >= len(t.msgs) {
		t.unknown++
		return
	}
	m := &t.msgs[seq]
	st := t.steps[m.step]
	st.lastReceipt = at
	for i, dev := range m.expect {
		if int(dev) != d.idx {
			continue
		}
		if m.got[i] < 255 {
			m.got[i]++
		}
		if m.got[i] > 1 {
			st.duplicated++
			return
		}
		st.received++
		lat := at.Sub(m.sent)
		if t.devTarget[d.idx] == m.senderTarget {
			st.same = append(st.same, lat)
		} else {
			st.cross = append(st.cross, lat)
		}
		return
	}
	st.unexpected++
}

func (t *tracker) ack(d *device, p pendingAck, ok bool, code string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.seq < 0 || p.seq >= len(t.msgs) {
		return
	}
	st := t.steps[t.msgs[p.seq].step]
	st.acks = append(st.acks, at.Sub(p.sent))
	if ok {
		st.ackOK++
	} else {
		st.ackErrors[code]++
	}
}

func (t *tracker) otherEvent(d *device, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.otherEvents[name]++
}

// outstanding returns the deliveries and acks of step not received yet.
func (t *tracker) outstanding(step int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.steps[step]
	// The server acks after it has delivered, so the deliveries of the last
	// message can all be in while its ack is still on the wire: wait for both.
	return (st.expected - st.received) + (st.sent - len(st.acks))
}

// totals returns messages sent and deliveries received over all steps.
func (t *tracker) totals() (sent, received, duplicated int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, st := range t.steps {
		sent += st.sent
		received += st.received
		duplicated += st.duplicated
	}
	return sent, received, duplicated
}

// deviceFault is what one device got wrong in one step.
type deviceFault struct {
	missedAsRecipient int // deliveries to its own user
	missedAsSender    int // copies of its user's own messages sent from another device
	duplicates        int
}

// deviceFaults returns, for each device with a fault, what it missed and
// how many extra copies it got.
func (t *tracker) deviceFaults(step int) map[int]*deviceFault {
	t.mu.Lock()
	defer t.mu.Unlock()
	faults := make(map[int]*deviceFault)
	get := func(dev int32) *deviceFault {
		f := faults[int(dev)]
		if f == nil {
			f = &deviceFault{}
			faults[int(dev)] = f
		}
		return f
	}
	for i := range t.msgs {
		m := &t.msgs[i]
		if m.step != step {
			continue
		}
		for j, dev := range m.expect {
			switch {
			case m.got[j] == 0 && int32(j) < m.nTo:
				get(dev).missedAsRecipient++
			case m.got[j] == 0:
				get(dev).missedAsSender++
			case m.got[j] > 1:
				get(dev).duplicates += int(m.got[j]) - 1
			}
		}
	}
	return faults
}
