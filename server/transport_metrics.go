package server

import (
	"github.com/switchboard-rt/switchboard/engineio"
	"github.com/switchboard-rt/switchboard/socketio"
)

// limitMetrics writes the counters of the transport's limits: what each
// closed or cut.
func limitMetrics(eng *engineio.Stats, sio *socketio.Stats, t *httpTimeouts) func(e *expo) {
	return func(e *expo) {
		e.family("switchboard_slow_consumer_disconnects_total", "counter", "Connections closed because more than MAX_QUEUED_BYTES waited to be written to them (a client that stopped reading).")
		e.sample("switchboard_slow_consumer_disconnects_total", nil, float64(eng.SlowClients.Load()))
		e.family("switchboard_connect_timeouts_total", "counter", "Connections closed because they had not joined /socket with a valid token within CONNECT_TIMEOUT (a v2 client's implicit / does not count).")
		e.sample("switchboard_connect_timeouts_total", nil, float64(sio.ConnectTimeouts.Load()))
		e.family("switchboard_payload_too_large_total", "counter", "Connections closed for input over MAX_PAYLOAD_BYTES, by kind: message (an Engine.IO message or polling POST body), binary_packet (a binary packet's header and attachments received so far), connect_backlog (what a connection sent while its namespace CONNECT was being decided).")
		e.sample("switchboard_payload_too_large_total", [][2]string{{"kind", "message"}}, float64(eng.TooLarge.Load()))
		e.sample("switchboard_payload_too_large_total", [][2]string{{"kind", "binary_packet"}}, float64(sio.PacketsTooLarge.Load()))
		e.sample("switchboard_payload_too_large_total", [][2]string{{"kind", "connect_backlog"}}, float64(sio.BacklogTooLarge.Load()))
		e.family("switchboard_http_timeouts_total", "counter", "HTTP connections or requests cut by a timeout, by kind: idle (HTTP_IDLE_TIMEOUT between requests), header (no request within the 10 s header timeout), body (a request body not read within HTTP_BODY_TIMEOUT).")
		e.sample("switchboard_http_timeouts_total", [][2]string{{"kind", "idle"}}, float64(t.idleTimeouts.Load()))
		e.sample("switchboard_http_timeouts_total", [][2]string{{"kind", "header"}}, float64(t.headerTimeouts.Load()))
		e.sample("switchboard_http_timeouts_total", [][2]string{{"kind", "body"}}, float64(t.bodyTimeouts.Load()))
	}
}
