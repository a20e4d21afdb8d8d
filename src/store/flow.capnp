# The stored form of retake::flow::Flow (src/flow/flow.h), one message per value in the
# `flows` column family. Bodies are references into the `bodies` column family.
#
# Every byte string coming off the wire is Data, not Text: Text must be UTF-8 and
# NUL-terminated, and recorded traffic is neither. Changing field meaning needs a bump of
# kSchemaVersion (flow_store.h); adding fields with fresh ordinals does not.
@0xf1f4ed3b138f2250;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("retake::store::schema");

struct Header {
  name @0 :Data;
  value @1 :Data;
}

# A body's bytes live in `bodies` under their SHA-256; the flow keeps only the reference.
struct BodyRef {
  digest @0 :Data;       # 32-byte SHA-256 of the stored bytes; empty when no bytes were stored
  storedSize @1 :UInt64; # bytes kept (Body::data.size())
  wireSize @2 :UInt64;   # bytes seen on the wire (Body::size)
  truncated @3 :Bool;
}

struct Request {
  method @0 :Data;
  scheme @1 :Data;
  authority @2 :Data;
  path @3 :Data;
  httpVersion @4 :Data;
  headers @5 :List(Header);
  body @6 :BodyRef;
  trailers @7 :List(Header);
}

struct Response {
  status @0 :Int32;
  reason @1 :Data;
  httpVersion @2 :Data;
  headers @3 :List(Header);
  body @4 :BodyRef;
  trailers @5 :List(Header);
}

struct Error {
  kind @0 :UInt16;   # retake::flow::ErrorKind
  message @1 :Data;
}

struct Timing {
  clientConnected @0 :Int64;
  requestStarted @1 :Int64;
  requestEnded @2 :Int64;
  upstreamConnected @3 :Int64;
  responseStarted @4 :Int64;
  responseEnded @5 :Int64;
}

struct TlsInfo {
  present @0 :Bool;
  sni @1 :Data;
  alpn @2 :Data;
  version @3 :Data;
  cipher @4 :Data;
  peerSubject @5 :Data;
  peerIssuer @6 :Data;
}

struct WebSocketMessage {
  fromClient @0 :Bool;
  opcode @1 :UInt8;
  payload @2 :Data;   # inline: frames are small and belong to this flow only
  timestamp @3 :Int64;
  truncated @4 :Bool;   # payload cut at the body cap
  compressed @5 :Bool;  # sent with permessage-deflate; payload stored inflated
}

struct WebSocket {
  messages @0 :List(WebSocketMessage);
  closeCode @1 :UInt16;
  closeReason @2 :Data;
  closedByClient @3 :Bool;
}

struct Flow {
  id @0 :UInt64;
  session @1 :Data;
  run @2 :Data;
  origin @3 :UInt64;
  kind @4 :UInt8;     # retake::flow::FlowKind
  mode @5 :Data;
  clientAddress @6 :Data;
  upstreamAddress @7 :Data;
  request @8 :Request;
  # Optional parts of the model are optional pointers: absent when not set.
  response @9 :Response;
  error @10 :Error;
  timing @11 :Timing;
  clientTls @12 :TlsInfo;
  upstreamTls @13 :TlsInfo;
  websocket @14 :WebSocket;
  bytesFromClient @15 :UInt64;
  bytesFromUpstream @16 :UInt64;
  marked @17 :Data;
  comment @18 :Data;
  tags @19 :List(Data);
}
