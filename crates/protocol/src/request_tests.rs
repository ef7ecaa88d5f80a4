use super::*;

fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ParseError> {
    let mut p = RequestParser::new(Limits::default());
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(req) = p.parse(&mut buf)? {
        out.push(req.args.iter().map(|a| a.to_vec()).collect());
    }
    Ok(out)
}

fn v(args: &[&str]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.as_bytes().to_vec()).collect()
}

#[test]
fn parses_pipelined_multibulk_and_inline() {
    let got = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*0\r\n\r\nset a \"b c\"\n").unwrap();
    assert_eq!(got, vec![v(&["GET", "k"]), v(&["PING"]), v(&["set", "a", "b c"])]);
}

#[test]
fn partial_frames_wait_for_more_bytes_at_every_split() {
    let frame = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n";
    for cut in 0..frame.len() {
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(&frame[..cut]);
        assert_eq!(p.parse(&mut buf), Ok(None), "cut at {cut}");
        buf.extend_from_slice(&frame[cut..]);
        let req = p.parse(&mut buf).unwrap().unwrap();
        assert_eq!(req.args[2].as_ref(), b"va\r\nl");
        assert!(buf.is_empty());
    }
}

#[test]
fn protocol_errors_use_redis_wording() {
    assert_eq!(parse_all(b"*x\r\n"), Err(ParseError::InvalidMultibulkLength));
    assert_eq!(parse_all(b"*1\r\n+GET\r\n"), Err(ParseError::ExpectedDollar(b'+')));
    assert_eq!(parse_all(b"*1\r\n$-1\r\n"), Err(ParseError::InvalidBulkLength));
    assert_eq!(parse_all(b"*1\r\n$3\r\nGETXX"), Err(ParseError::InvalidBulkLength));
    assert_eq!(parse_all(b"SET a \"b\n"), Err(ParseError::UnbalancedQuotes));
    assert_eq!(ParseError::ExpectedDollar(b'+').to_string(), "ERR Protocol error: expected '$', got '+'");
}

#[test]
fn limits_are_enforced_before_buffering() {
    let limits = Limits { max_bulk_bytes: 10, max_args: 3, max_inline_bytes: 16 };
    let mut p = RequestParser::new(limits);
    let mut buf = BytesMut::from(&b"*1\r\n$11\r\n"[..]);
    assert_eq!(p.parse(&mut buf), Err(ParseError::InvalidBulkLength));
    let mut p = RequestParser::new(limits);
    let mut buf = BytesMut::from(&b"*4\r\n"[..]);
    assert_eq!(p.parse(&mut buf), Err(ParseError::InvalidMultibulkLength));
    let mut p = RequestParser::new(limits);
    let mut buf = BytesMut::from(&[b'a'; 17][..]);
    assert_eq!(p.parse(&mut buf), Err(ParseError::TooBigInline));
}

#[test]
fn inline_quoting_follows_sdssplitargs() {
    assert_eq!(split_inline(br#"a "\x41\n" 'it\'s'"#).unwrap(), v(&["a", "A\n", "it's"]));
    assert_eq!(split_inline(b"  ").unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(split_inline(br#""a"b"#), Err(ParseError::UnbalancedQuotes));
}

#[test]
fn huge_declared_lengths_are_refused_or_cost_nothing_until_their_bytes_come() {
    assert_eq!(parse_all(b"*2147483647\r\n"), Err(ParseError::InvalidMultibulkLength));
    assert_eq!(parse_all(b"*1\r\n$4294967296\r\n"), Err(ParseError::InvalidBulkLength));
    assert_eq!(parse_all(b"*1\r\n$99999999999999999999\r\n"), Err(ParseError::InvalidBulkLength));
    // 512 MiB is allowed: the buffer grows with what arrives, not with what is declared.
    let mut p = RequestParser::new(Limits::default());
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nSET\r\n$536870912\r\n"[..]);
    assert_eq!(p.parse(&mut buf), Ok(None));
    assert!(buf.capacity() < 256 * 1024, "{}", buf.capacity());
    buf.extend_from_slice(&vec![b'x'; 200_000]);
    assert_eq!(p.parse(&mut buf), Ok(None));
    assert!(buf.capacity() < 1024 * 1024, "{}", buf.capacity());
}

#[test]
fn a_recycled_argument_list_carries_the_next_request_and_nothing_of_its_own() {
    let mut p = RequestParser::new(Limits::default());
    let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"[..]);
    let first = p.parse(&mut buf).unwrap().unwrap();
    let list = first.args.as_ptr();
    p.recycle(first.args);
    let second = p.parse(&mut buf).unwrap().unwrap();
    assert_eq!(second.args, vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k")]);
    assert_eq!(second.args.as_ptr(), list, "the list was not reused");
    // A long list is not kept.
    let long: Vec<Bytes> = (0..100).map(|_| Bytes::from_static(b"x")).collect();
    p.recycle(long);
    buf.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    let third = p.parse(&mut buf).unwrap().unwrap();
    assert!(third.args.capacity() < 100);
}
