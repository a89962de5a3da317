package godel

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

// Version of this client module.
const Version = "0.1.0"

// Client holds one gRPC connection and a client per Godel service. It is safe for concurrent
// use; Close it when done.
type Client struct {
	conn *grpc.ClientConn

	Agents    *Agents
	Events    *Events
	Teams     godelv1.TeamServiceClient
	Workflows godelv1.WorkflowServiceClient
	Tasks     godelv1.TaskServiceClient
	Budgets   godelv1.BudgetServiceClient
	Intent    godelv1.IntentServiceClient
	Clusters  godelv1.ClusterServiceClient
	Auth      godelv1.AuthServiceClient
	System    godelv1.SystemServiceClient
}

type options struct {
	header   metadata.MD
	creds    credentials.TransportCredentials
	dialOpts []grpc.DialOption
}

// Option configures NewClient.
type Option func(*options) error

// WithAPIKey sends the key (godel_sk_...) as x-api-key on every call.
func WithAPIKey(key string) Option {
	return func(o *options) error {
		if key == "" {
			return errors.New("godel: WithAPIKey: empty key")
		}
		o.header.Set("x-api-key", key)
		return nil
	}
}

// WithBearerToken sends "authorization: Bearer <token>" (a JWT or an API key) on every call.
func WithBearerToken(token string) Option {
	return func(o *options) error {
		if token == "" {
			return errors.New("godel: WithBearerToken: empty token")
		}
		o.header.Set("authorization", "Bearer "+token)
		return nil
	}
}

// WithTLS connects over TLS. A nil config verifies the server with the system's roots; set
// RootCAs for a private CA and Certificates for mutual TLS. Without WithTLS the connection is
// plaintext (h2c), as for a gateway on loopback.
func WithTLS(config *tls.Config) Option {
	return func(o *options) error {
		if config == nil {
			config = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		o.creds = credentials.NewTLS(config)
		return nil
	}
}

// WithDialOptions adds grpc.DialOptions (interceptors, keepalive, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) error {
		o.dialOpts = append(o.dialOpts, opts...)
		return nil
	}
}

// NewClient connects lazily to addr ("host:port", or "https://host[:port]" for TLS with the
// system's roots). Calls fail with an *Error; reads, and creates (which carry a request_id),
// are retried on UNAVAILABLE with backoff.
func NewClient(addr string, opts ...Option) (*Client, error) {
	o := &options{header: metadata.MD{}}
	if rest, ok := strings.CutPrefix(addr, "https://"); ok {
		addr = rest
		if !strings.Contains(addr, ":") {
			addr += ":443"
		}
		opts = append([]Option{WithTLS(nil)}, opts...)
	}
	addr = strings.TrimPrefix(addr, "http://")
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.creds == nil {
		o.creds = insecure.NewCredentials()
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(o.creds),
		grpc.WithDefaultServiceConfig(serviceConfig()),
		grpc.WithChainUnaryInterceptor(unaryInterceptor(o.header)),
		grpc.WithChainStreamInterceptor(streamInterceptor(o.header)),
	}
	conn, err := grpc.NewClient(addr, append(dial, o.dialOpts...)...)
	if err != nil {
		return nil, err
	}
	events := &Events{EventServiceClient: godelv1.NewEventServiceClient(conn)}
	return &Client{
		conn:      conn,
		Agents:    &Agents{AgentServiceClient: godelv1.NewAgentServiceClient(conn), events: events},
		Events:    events,
		Teams:     godelv1.NewTeamServiceClient(conn),
		Workflows: godelv1.NewWorkflowServiceClient(conn),
		Tasks:     godelv1.NewTaskServiceClient(conn),
		Budgets:   godelv1.NewBudgetServiceClient(conn),
		Intent:    godelv1.NewIntentServiceClient(conn),
		Clusters:  godelv1.NewClusterServiceClient(conn),
		Auth:      godelv1.NewAuthServiceClient(conn),
		System:    godelv1.NewSystemServiceClient(conn),
	}, nil
}

// Conn is the underlying connection, for services or options this package does not wrap.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func withHeader(ctx context.Context, header metadata.MD) context.Context {
	for k, vs := range header {
		for _, v := range vs {
			ctx = metadata.AppendToOutgoingContext(ctx, k, v)
		}
	}
	return ctx
}

func unaryInterceptor(header metadata.MD) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return asError(invoker(withHeader(ctx, header), method, req, reply, cc, opts...))
	}
}

func streamInterceptor(header metadata.MD) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(withHeader(ctx, header), desc, cc, method, opts...)
		if err != nil {
			return nil, asError(err)
		}
		return &typedStream{s}, nil
	}
}

// typedStream turns the errors a stream ends with into *Error (io.EOF stays io.EOF).
type typedStream struct{ grpc.ClientStream }

func (s *typedStream) RecvMsg(m any) error { return asError(s.ClientStream.RecvMsg(m)) }
func (s *typedStream) SendMsg(m any) error { return asError(s.ClientStream.SendMsg(m)) }
