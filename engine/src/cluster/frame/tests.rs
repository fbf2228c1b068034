use super::*;
use crate::value::Table;
use proptest::prelude::*;

fn pid(node: &str, host: &str, uniq: u64) -> Pid {
    Pid::on(NodeId::named(node), std::sync::Arc::from(host), uniq)
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z:._@|{}-]{1,12}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

fn arb_pid() -> impl Strategy<Value = Pid> {
    (
        prop_oneof![Just("local".to_string()), "n[0-9]", "[a-z]{1,6}"],
        "[a-z:]{1,10}",
        any::<u64>(),
    )
        .prop_map(|(n, h, u)| pid(&n, &h, u))
}

fn arb_error() -> impl Strategy<Value = ErrorValue> {
    (
        prop_oneof![
            Just("".to_string()),
            Just("NotFound".to_string()),
            "[A-Z][a-z]{0,6}"
        ],
        arb_text(),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<i64>().prop_map(Value::Int)),
        prop::option::of(arb_text()),
        prop::collection::vec((arb_text(), any::<u32>(), arb_text()), 0..2),
    )
        .prop_map(|(k, m, retryable, details, context, frames)| {
            let mut e = ErrorValue::new(k, m);
            e.retryable = retryable;
            e.details = details;
            e.context = context;
            e.frames = frames;
            e
        })
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("NaN never equals itself", |f| !f.is_nan())
            .prop_map(Value::Float),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Value::Str),
        arb_error().prop_map(Value::error),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        (
            prop::collection::vec(inner.clone(), 0..4),
            prop::collection::vec((inner.clone(), inner), 0..3),
        )
            .prop_map(|(array, map)| Value::table(Table { array, map }))
    })
}

fn arb_result() -> impl Strategy<Value = ExitResult> {
    prop_oneof![arb_value().prop_map(Ok), arb_error().prop_map(Err)]
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        ("[a-z0-9]{1,8}", any::<u64>(), any::<[u8; 32]>()).prop_map(|(n, incarnation, proof)| {
            Frame::Hello(Hello {
                node: NodeId::named(&n),
                incarnation,
                proof,
            })
        }),
        (
            prop::option::of(arb_pid()),
            prop_oneof![
                arb_pid().prop_map(Dest::Pid),
                arb_text().prop_map(Dest::Name)
            ],
            arb_text(),
            prop::collection::vec(arb_value(), 0..4),
            any::<u64>(),
        )
            .prop_map(|(from, to, topic, payload, seq)| Frame::Send(SendFrame {
                from,
                to,
                topic,
                payload,
                seq
            })),
        (
            arb_pid(),
            any::<u64>(),
            arb_text(),
            arb_text(),
            prop::collection::vec(arb_value(), 0..3),
            any::<bool>(),
            any::<bool>(),
            prop::option::of(arb_text()),
        )
            .prop_map(|(caller, tag, entry, host, args, monitor, link, name)| {
                Frame::SpawnRequest(SpawnRequest {
                    caller,
                    tag,
                    entry,
                    host,
                    args,
                    monitor,
                    link,
                    name,
                })
            }),
        (
            arb_pid(),
            any::<u64>(),
            prop_oneof![arb_pid().prop_map(Ok), arb_error().prop_map(Err)]
        )
            .prop_map(|(caller, tag, result)| Frame::SpawnReply(SpawnReply {
                caller,
                tag,
                result
            })),
        (arb_pid(), arb_pid(), 0..4u8).prop_map(|(a, b, which)| match which {
            0 => Frame::Monitor {
                watcher: a,
                target: b,
            },
            1 => Frame::Demonitor {
                watcher: a,
                target: b,
            },
            2 => Frame::Link { from: a, to: b },
            _ => Frame::Unlink { from: a, to: b },
        }),
        (arb_pid(), arb_pid(), arb_result(), any::<bool>()).prop_map(|(from, to, result, exit)| {
            if exit {
                Frame::Exit { from, to, result }
            } else {
                Frame::LinkDown { from, to, result }
            }
        }),
        (arb_text(), arb_pid(), any::<u64>(), "[a-z0-9]{1,6}").prop_map(
            |(name, owner, lamport, node)| Frame::NameClaim(NameClaim {
                name,
                owner,
                key: ClaimKey {
                    lamport,
                    node: NodeId::named(&node)
                },
            })
        ),
        (arb_text(), arb_pid()).prop_map(|(name, owner)| Frame::NameRelease { name, owner }),
        (arb_pid(), arb_pid(), prop::option::of(arb_text())).prop_map(|(from, to, reason)| {
            match reason {
                Some(reason) => Frame::Cancel { from, to, reason },
                None => Frame::Terminate { from, to },
            }
        }),
        arb_dispatch(),
    ]
}

fn arb_map() -> impl Strategy<Value = std::collections::BTreeMap<String, String>> {
    prop::collection::btree_map(arb_text(), arb_text(), 0..3)
}

fn arb_any() -> impl Strategy<Value = Option<crate::dispatch::Any>> {
    prop::option::of(
        (arb_text(), prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(type_url, value)| crate::dispatch::Any { type_url, value }),
    )
}

fn arb_service() -> impl Strategy<Value = Option<crate::dispatch::ServiceRef>> {
    prop::option::of(
        (arb_text(), arb_text()).prop_map(|(namespace, service_name)| {
            crate::dispatch::ServiceRef {
                namespace,
                service_name,
            }
        }),
    )
}

fn arb_status() -> impl Strategy<Value = Option<crate::dispatch::Status>> {
    prop::option::of(
        (any::<i32>(), arb_text(), arb_map()).prop_map(|(code, message, details)| {
            crate::dispatch::Status {
                code,
                message,
                details,
            }
        }),
    )
}

/// The three dispatch frames with every kind of request and response.
fn arb_dispatch() -> BoxedStrategy<Frame> {
    use crate::dispatch::types::*;
    let strs = || prop::collection::vec(arb_text(), 0..3);
    let request = prop_oneof![
        (arb_text(), strs(), arb_map()).prop_map(|(address, namespaces, metadata)| {
            Request::Connect(ConnectRequest {
                address,
                namespaces,
                metadata,
            })
        }),
        (arb_text(), arb_service(), arb_text(), arb_any(), arb_map()).prop_map(
            |(namespace, service, method_name, input, execution_context)| {
                Request::Serve(ServeRequest {
                    namespace,
                    service,
                    method_name,
                    input,
                    execution_context,
                })
            }
        ),
        (
            arb_text(),
            arb_service(),
            arb_text(),
            arb_any(),
            arb_text(),
            arb_map()
        )
            .prop_map(
                |(namespace, service, method_name, input, target_collector_id, routing_hints)| {
                    Request::Dispatch(DispatchRequest {
                        namespace,
                        service,
                        method_name,
                        input,
                        target_collector_id,
                        routing_hints,
                    })
                }
            ),
    ]
    .boxed();
    let response = prop_oneof![
        (arb_status(), arb_text(), strs(), arb_text()).prop_map(|(status, c, shared, t)| {
            Response::Connect(ConnectResponse {
                status,
                connection_id: c,
                shared_namespaces: shared,
                target_collector_id: t,
            })
        }),
        (arb_status(), arb_any(), arb_text()).prop_map(|(status, output, executor_id)| {
            Response::Serve(ServeResponse {
                status,
                output,
                executor_id,
            })
        }),
        (arb_status(), arb_any(), arb_text()).prop_map(|(status, output, by)| {
            Response::Dispatch(DispatchResponse {
                status,
                output,
                handled_by_collector_id: by,
            })
        }),
    ]
    .boxed();
    prop_oneof![
        (any::<u64>(), any::<u64>(), request).prop_map(|(call, timeout_ns, request)| {
            Frame::DispatchRequest {
                call,
                timeout_ns,
                request,
            }
        }),
        (any::<u64>(), response)
            .prop_map(|(call, response)| Frame::DispatchReply { call, response }),
        (strs(), any::<u64>(), any::<bool>()).prop_map(|(namespaces, version, reply)| {
            Frame::DispatchNamespaces {
                namespaces,
                version,
                reply,
            }
        }),
        any::<u64>().prop_map(|call| Frame::DispatchCancel { call }),
    ]
    .boxed()
}

proptest! {
    #[test]
    fn frames_round_trip(f in arb_frame()) {
        let bytes = f.encode().unwrap();
        let back = Frame::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &f);
        prop_assert_eq!(back.encode().unwrap(), bytes, "one frame, one encoding");
    }

    #[test]
    fn every_cut_of_a_frame_is_refused(f in arb_frame()) {
        let bytes = f.encode().unwrap();
        for cut in 0..bytes.len() {
            let e = Frame::decode(&bytes[..cut]).unwrap_err();
            let expected = cut < HEADER_LEN && e == FrameError::Truncated("header")
                || matches!(e, FrameError::LengthMismatch { .. });
            prop_assert!(expected, "cut at {}: {:?}", cut, e);
        }
    }

    #[test]
    fn a_cut_body_with_a_matching_length_names_a_field(f in arb_frame(), cut in any::<prop::sample::Index>()) {
        let bytes = f.encode().unwrap();
        let body = &bytes[HEADER_LEN..];
        let cut = cut.index(body.len().max(1)).min(body.len().saturating_sub(1));
        let mut short = bytes[..HEADER_LEN].to_vec();
        short[4..8].copy_from_slice(&(cut as u32).to_le_bytes());
        short.extend_from_slice(&body[..cut]);
        // A shorter body may still end on a field boundary only if what follows was optional,
        // which no frame has: the last field is always required.
        let e = Frame::decode(&short).unwrap_err();
        prop_assert!(
            matches!(e, FrameError::Truncated(_) | FrameError::BadLength { .. }),
            "{:?}", e
        );
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), k in 0u8..20) {
        let _ = Frame::decode(&bytes);
        // The same garbage behind a valid envelope reaches the body decoders.
        let mut framed = MAGIC.to_vec();
        framed.push(VERSION);
        framed.push(k);
        framed.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        framed.extend_from_slice(&bytes);
        if let Ok(f) = Frame::decode(&framed) {
            prop_assert_eq!(f.encode().unwrap(), framed, "what decodes re-encodes to the same bytes");
        }
    }
}

fn envelope(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.push(VERSION);
    b.push(kind);
    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
    b.extend_from_slice(body);
    b
}

#[test]
fn the_envelope_is_checked_field_by_field() {
    let good = Frame::Monitor {
        watcher: pid("n1", "app:p", 1),
        target: pid("n2", "app:p", 2),
    }
    .encode()
    .unwrap();
    assert_eq!(&good[..4], &[b'W', b'F', 1, kind::MONITOR]);
    let body_len = u32::from_le_bytes(good[4..8].try_into().unwrap()) as usize;
    assert_eq!(body_len, good.len() - HEADER_LEN);

    assert_eq!(
        Frame::decode(b"WF\x01"),
        Err(FrameError::Truncated("header"))
    );
    let mut b = good.clone();
    b[0] = b'X';
    assert_eq!(Frame::decode(&b), Err(FrameError::BadMagic([b'X', b'F'])));
    let mut b = good.clone();
    b[2] = 2;
    assert_eq!(Frame::decode(&b), Err(FrameError::UnsupportedVersion(2)));
    let mut b = good.clone();
    b[3] = 99;
    assert_eq!(Frame::decode(&b), Err(FrameError::UnknownKind(99)));
    let mut b = good.clone();
    b.push(0);
    assert_eq!(
        Frame::decode(&b),
        Err(FrameError::LengthMismatch {
            declared: body_len as u64,
            actual: body_len as u64 + 1
        })
    );
    let mut b = envelope(kind::MONITOR, &good[HEADER_LEN..]);
    b.push(7);
    b[4..8].copy_from_slice(&((body_len + 1) as u32).to_le_bytes());
    assert_eq!(
        Frame::decode(&b),
        Err(FrameError::TrailingBytes {
            kind: "monitor",
            count: 1
        })
    );
    let mut huge = good[..HEADER_LEN].to_vec();
    huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        Frame::decode(&huge),
        Err(FrameError::TooLarge(u32::MAX as u64))
    );
}

#[test]
fn bad_fields_are_named() {
    let mut w = Vec::new();
    let mut b = Writer(&mut w);
    b.u8(0); // no sender
    b.u8(1); // to a name
    b.str("svc");
    b.u64(2);
    b.0.extend_from_slice(&[0xff, 0xfe]); // the topic: not UTF-8
    b.u64(0);
    b.u64(1);
    assert_eq!(
        Frame::decode(&envelope(kind::SEND, &w)),
        Err(FrameError::BadUtf8("send.topic"))
    );

    let mut w = Vec::new();
    Writer(&mut w).u8(3);
    assert_eq!(
        Frame::decode(&envelope(kind::SEND, &w)),
        Err(FrameError::BadFlag {
            field: "send.from",
            byte: 3
        })
    );

    let mut w = Vec::new();
    let mut b = Writer(&mut w);
    b.str("n1");
    b.str(""); // empty host
    b.u64(1);
    assert_eq!(
        Frame::decode(&envelope(kind::LINK, &w)),
        Err(FrameError::BadPid("link.from"))
    );

    let mut w = Vec::new();
    let mut b = Writer(&mut w);
    b.pid(&pid("n1", "h", 1));
    b.u64(7);
    b.u8(1);
    codec::encode(&Value::Int(3), b.0); // an error field holding an int
    assert_eq!(
        Frame::decode(&envelope(kind::SPAWN_REPLY, &w)),
        Err(FrameError::NotAnError("spawn_reply.error"))
    );

    let mut w = Vec::new();
    let mut b = Writer(&mut w);
    b.pid(&pid("n1", "h", 1));
    b.pid(&pid("n2", "h", 2));
    b.u8(0);
    b.u8(42); // no value starts with tag 42
    assert_eq!(
        Frame::decode(&envelope(kind::EXIT, &w)),
        Err(FrameError::BadValue {
            field: "exit.result",
            error: CodecError::BadTag(42)
        })
    );

    let mut w = Vec::new();
    let mut b = Writer(&mut w);
    b.u8(0);
    b.u8(1);
    b.u64(1 << 40); // a name longer than the frame
    assert_eq!(
        Frame::decode(&envelope(kind::SEND, &w)),
        Err(FrameError::BadLength {
            field: "send.to",
            len: 1 << 40
        })
    );
    // Every error reads as a sentence naming the field.
    let text = FrameError::BadLength {
        field: "send.to",
        len: 9,
    }
    .to_string();
    assert!(text.contains("send.to"), "{text}");
}

#[test]
fn hello_proves_the_secret() {
    let h = Hello::new(b"s3cret", NodeId::named("n1"), 3);
    assert!(h.verify(b"s3cret"));
    assert!(!h.verify(b"other"), "a peer with another key never joins");
    let replayed_as_other_incarnation = Hello {
        incarnation: 4,
        ..h.clone()
    };
    assert!(!replayed_as_other_incarnation.verify(b"s3cret"));
    let as_other_node = Hello {
        node: NodeId::named("n2"),
        ..h.clone()
    };
    assert!(!as_other_node.verify(b"s3cret"));
    let back = Frame::decode(&Frame::Hello(h.clone()).encode().unwrap()).unwrap();
    assert_eq!(back, Frame::Hello(h));
}

#[test]
fn competing_name_claims_have_one_winner() {
    let claim = |lamport, node: &str, uniq| NameClaim {
        name: "svc".into(),
        owner: pid(node, "app:p", uniq),
        key: ClaimKey {
            lamport,
            node: NodeId::named(node),
        },
    };
    let early = claim(3, "n2", 9);
    let late = claim(5, "n1", 1);
    assert!(early.wins_over(&late), "the earlier claim wins");
    assert!(!late.wins_over(&early));
    let tie_a = claim(4, "n1", 1);
    let tie_b = claim(4, "n2", 1);
    assert!(tie_a.wins_over(&tie_b), "ties go to the smaller node name");
    assert!(!tie_b.wins_over(&tie_a));
    assert!(!tie_a.wins_over(&tie_a), "a claim does not beat itself");
}
