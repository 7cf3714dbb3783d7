package server

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/switchboard-rt/switchboard/namespaces"
	"github.com/switchboard-rt/switchboard/relay"
)

// relayAnswerMargin is added to a ping interval and timeout to bound how
// long an owner may take to answer a relayed polling request.
const relayAnswerMargin = 5 * time.Second

// newRelay builds the relay of the Engine.IO requests whose session another
// process holds (with Redis only: the registry of the processes lives
// there), and plugs it into the engine's configuration.
func (s *Server) newRelay(nsCfg *namespaces.Config) error {
	r, err := relay.New(relay.Options{
		Redis:         s.redis.pub,
		Path:          "/socket.io/",
		MaxPayload:    s.cfg.MaxPayloadBytes,
		AnswerTimeout: s.cfg.PingInterval + s.cfg.PingTimeout + relayAnswerMargin,
		NodeHeader:    nodeHeader,
		Logger:        s.logger,
	})
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	s.relay = r
	s.metrics.extra = append(s.metrics.extra, relayMetrics(r.Stats()))
	nsCfg.SessionID = r.NewID
	nsCfg.ForeignSession = r.Serve
	return nil
}

// startRelay registers this process with the cluster at its advertised
// address and returns that address ("" without a relay).
func (s *Server) startRelay() (string, error) {
	if s.relay == nil {
		return "", nil
	}
	addr := advertiseAddr(s.cfg.AdvertiseAddr, s.cfg.Addr, s.ln.Addr(), net.InterfaceAddrs)
	if err := s.relay.Start(addr); err != nil {
		return "", err
	}
	return addr, nil
}

func (s *Server) closeRelay(ctx context.Context) error {
	if s.relay == nil {
		return nil
	}
	return s.relay.Close(ctx)
}

// advertiseAddr is ADVERTISE_ADDR, or else derived from ADDR and the port
// actually bound: ADDR's host when it names one that is not a wildcard
// ("127.0.0.1:7001", "sb1:7999"); otherwise (":7999", "0.0.0.0:7999") the
// machine's first non-loopback IPv4 address, else its first non-loopback
// IPv6 address, else 127.0.0.1: in a container or a pod that is the
// address the others reach it at.
func advertiseAddr(configured, listen string, bound net.Addr, interfaces func() ([]net.Addr, error)) string {
	if configured != "" {
		return configured
	}
	port := ""
	if tcp, ok := bound.(*net.TCPAddr); ok {
		port = strconv.Itoa(tcp.Port)
	} else if _, p, err := net.SplitHostPort(bound.String()); err == nil {
		port = p
	}
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			return net.JoinHostPort(host, port)
		}
	}
	var v6 net.IP
	if addrs, err := interfaces(); err == nil {
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || !ipn.IP.IsGlobalUnicast() { // loopback and link-local are not for others
				continue
			}
			if ipn.IP.To4() != nil {
				return net.JoinHostPort(ipn.IP.String(), port)
			}
			if v6 == nil {
				v6 = ipn.IP
			}
		}
	}
	if v6 != nil {
		return net.JoinHostPort(v6.String(), port)
	}
	return net.JoinHostPort("127.0.0.1", port)
}
