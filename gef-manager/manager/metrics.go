package manager

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the manager's Prometheus metrics, on a registry of its own so
// that several managers can live in one test process.
type Metrics struct {
	Registry  *prometheus.Registry
	submitted prometheus.Counter
	finished  *prometheus.CounterVec
	dispatch  prometheus.Histogram
	polls     prometheus.Counter
	logBytes  prometheus.Counter
	// HTTP is observed by the HTTP layer.
	HTTP *prometheus.HistogramVec
}

func newMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		submitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gef_jobs_submitted_total", Help: "Jobs accepted."}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gef_jobs_finished_total", Help: "Jobs that reached a final state, by state."}, []string{"state"}),
		dispatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gef_dispatch_seconds", Help: "Time from a job's submission to its assignment to a node.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}),
		polls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gef_node_polls_total", Help: "Polls answered for nodes."}),
		logBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gef_log_bytes_total", Help: "Bytes of container output received."}),
		HTTP: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gef_http_request_duration_seconds", Help: "HTTP requests by route, method and status.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"route", "method", "code"}),
	}
	m.Registry.MustRegister(m.submitted, m.finished, m.dispatch, m.polls, m.logBytes, m.HTTP,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
