package relay_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// BenchmarkPoll is one polling round trip of a session: a POST of one
// message, then the GET that brings its echo back. "direct" sends both to
// the process that holds the session, "relayed" to another process of the
// cluster, which relays them; the difference is what relaying adds to a
// poll (README, "Polling without sticky sessions").
//
//	go test -run '^$' -bench Poll -benchtime 20000x -count 5 ./relay/
func BenchmarkPoll(b *testing.B) {
	rdb := startRedis(b)
	owner := startProc(b, "a", rdb)
	other := startProc(b, "b", rdb)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for _, bc := range []struct {
		name string
		via  *proc
	}{{"direct", owner}, {"relayed", other}} {
		b.Run(bc.name, func(b *testing.B) {
			sid := handshake(b, owner)
			url := pollURL(bc.via, sid)
			for b.Loop() {
				res, err := client.Post(url, "text/plain", strings.NewReader("4ping"))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				res, err = client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				packets := strings.Split(string(body), "\x1e")
				if res.StatusCode != 200 || !slices.Contains(packets, "4ping") {
					b.Fatalf("poll: %d %q", res.StatusCode, body)
				}
				if slices.Contains(packets, "2") { // the owner's ping, every 2 s
					res, err := client.Post(url, "text/plain", strings.NewReader("3"))
					if err != nil {
						b.Fatal(err)
					}
					res.Body.Close()
				}
			}
		})
	}
}
