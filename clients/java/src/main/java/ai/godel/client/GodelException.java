package ai.godel.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A failed call: its gRPC code and message, and the details the server sent in
 * google.rpc.Status (ErrorInfo's reason, domain and metadata; BadRequest's field violations).
 * Catch a kind with its nested class ({@code catch (GodelException.NotFound e)}) or compare
 * {@link #code()}.
 */
public class GodelException extends RuntimeException {
  /** One bad field of a request and what is wrong with it. */
  public record FieldViolation(String field, String description) {}

  private final Status.Code code;
  private final String reason;
  private final String domain;
  private final Map<String, String> errorMetadata;
  private final List<FieldViolation> fieldViolations;

  GodelException(Status.Code code, String message, ErrorInfo info, List<FieldViolation> violations, Throwable cause) {
    super(code + ": " + message, cause);
    this.code = code;
    this.reason = info.getReason();
    this.domain = info.getDomain();
    this.errorMetadata = Map.copyOf(info.getMetadataMap());
    this.fieldViolations = List.copyOf(violations);
  }

  public Status.Code code() { return code; }

  /** ErrorInfo.reason, e.g. "LAST_ADMIN_KEY" ("" when the server sent none). */
  public String reason() { return reason; }

  public String domain() { return domain; }

  public Map<String, String> errorMetadata() { return errorMetadata; }

  /** BadRequest field violations, e.g. [FieldViolation[field=task, description=is required]]. */
  public List<FieldViolation> fieldViolations() { return fieldViolations; }

  public static final class InvalidArgument extends GodelException {
    InvalidArgument(Status.Code c, String m, ErrorInfo i, List<FieldViolation> v, Throwable t) { super(c, m, i, v, t); }
  }

  public static final class Unauthenticated extends GodelException {
    Unauthenticated(Status.Code c, String m, ErrorInfo i, List<FieldViolation> v, Throwable t) { super(c, m, i, v, t); }
  }

  public static final class PermissionDenied extends GodelException {
    PermissionDenied(Status.Code c, String m, ErrorInfo i, List<FieldViolation> v, Throwable t) { super(c, m, i, v, t); }
  }

  public static final class NotFound extends GodelException {
    NotFound(Status.Code c, String m, ErrorInfo i, List<FieldViolation> v, Throwable t) { super(c, m, i, v, t); }
  }

  public static final class AlreadyExists extends GodelException {
    AlreadyExists(Status.Code c, String m, ErrorInfo i, List<FieldViolation> v, Throwable t) { super(c, m, i, v, t); }
  }

  public static final class FailedPrecondition extends GodelException {
    FailedPrecondition(Status.Code c, String m, ErrorInfo i, List<FieldViolation> v, Throwable t) { super(c, m, i, v, t); }
  }

  public static final class Aborted extends GodelException {
    Aborted(Status.Code c, String m, ErrorInfo i, List<FieldViolation> v, Throwable t) { super(c, m, i, v, t); }
  }

  public static final class ResourceExhausted extends GodelException {
    ResourceExhausted(Status.Code c, String m, ErrorInfo i, List<FieldViolation> v, Throwable t) { super(c, m, i, v, t); }
  }

  public static final class Unavailable extends GodelException {
    Unavailable(Status.Code c, String m, ErrorInfo i, List<FieldViolation> v, Throwable t) { super(c, m, i, v, t); }
  }

  /** The GodelException of a status error (its details decoded), e.g. one a generated stub threw. */
  public static GodelException from(StatusRuntimeException e) {
    com.google.rpc.Status status = StatusProto.fromThrowable(e);
    ErrorInfo info = ErrorInfo.getDefaultInstance();
    List<FieldViolation> violations = new ArrayList<>();
    if (status != null) {
      for (Any detail : status.getDetailsList()) {
        try {
          if (detail.is(ErrorInfo.class)) {
            info = detail.unpack(ErrorInfo.class);
          } else if (detail.is(BadRequest.class)) {
            for (BadRequest.FieldViolation v : detail.unpack(BadRequest.class).getFieldViolationsList()) {
              violations.add(new FieldViolation(v.getField(), v.getDescription()));
            }
          }
        } catch (InvalidProtocolBufferException ignored) {
          // a detail that does not decode is left out
        }
      }
    }
    String message = e.getStatus().getDescription() == null ? "" : e.getStatus().getDescription();
    return of(e.getStatus().getCode(), message, info, violations, e);
  }

  /** The GodelException of a code and message (errors sent in-band, e.g. a StreamEnd). */
  static GodelException of(Status.Code code, String message, ErrorInfo info, List<FieldViolation> v, Throwable cause) {
    return switch (code) {
      case INVALID_ARGUMENT -> new InvalidArgument(code, message, info, v, cause);
      case UNAUTHENTICATED -> new Unauthenticated(code, message, info, v, cause);
      case PERMISSION_DENIED -> new PermissionDenied(code, message, info, v, cause);
      case NOT_FOUND -> new NotFound(code, message, info, v, cause);
      case ALREADY_EXISTS -> new AlreadyExists(code, message, info, v, cause);
      case FAILED_PRECONDITION -> new FailedPrecondition(code, message, info, v, cause);
      case ABORTED -> new Aborted(code, message, info, v, cause);
      case RESOURCE_EXHAUSTED -> new ResourceExhausted(code, message, info, v, cause);
      case UNAVAILABLE -> new Unavailable(code, message, info, v, cause);
      default -> new GodelException(code, message, info, v, cause);
    };
  }

  /** Runs a call, turning a status error into a GodelException. */
  static <T> T call(java.util.function.Supplier<T> call) {
    try {
      return call.get();
    } catch (StatusRuntimeException e) {
      throw from(e);
    }
  }
}
