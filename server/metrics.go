package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/switchboard-rt/switchboard/handlers"
	"github.com/switchboard-rt/switchboard/namespaces"
)

// metrics owns one Prometheus registry per Server, so that two servers in
// one test process do not collide.
type metrics struct {
	registry      *prometheus.Registry
	events        *prometheus.CounterVec
	deliveries    *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	adapterErrors prometheus.Counter
	apiEvents     prometheus.Counter
}

var _ namespaces.Observer = (*metrics)(nil)

func newMetrics(sockets func() float64) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_events_total",
			Help: "Router events handled, by router event (unknown for unregistered names) and result (ok or an error code).",
		}, []string{"event", "result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_deliveries_total",
			Help: "Deliveries emitted to a user room (each reaches every socket of the user on every process), by event (other for /api/events names).",
		}, []string{"event"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_auth_failures_total",
			Help: "Refused /socket connections, by reason.",
		}, []string{"reason"}),
		adapterErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_adapter_errors_total",
			Help: "Errors reported by the Redis adapter (publish, subscribe, reconnect).",
		}),
		apiEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_api_events_total",
			Help: "POST /api/events requests accepted.",
		}),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_sockets",
			Help: "Sockets connected to /socket in this process.",
		}, sockets),
		m.events, m.deliveries, m.authFailures, m.adapterErrors, m.apiEvents,
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

func (m *metrics) EventHandled(event, result string) { m.events.WithLabelValues(event, result).Inc() }

func (m *metrics) Delivered(event string) {
	switch event {
	case handlers.EventMessageSent, handlers.EventPostUpdatedNotification:
	default:
		event = "other" // /api/events names come from callers: bounded labels only
	}
	m.deliveries.WithLabelValues(event).Inc()
}

func (m *metrics) AuthFailed(reason string) { m.authFailures.WithLabelValues(reason).Inc() }
