//! Just enough of the DNS wire format (RFC 1035) for the test server and
//! clients: one question per message, A and AAAA answers.

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_REFUSED: u8 = 5;

/// Encodes a query for `name` (dot separated) with recursion desired.
pub fn encode_query(transaction_id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut message = Vec::with_capacity(32 + name.len());
    message.extend_from_slice(&transaction_id.to_be_bytes());
    message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|label| !label.is_empty()) {
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.push(0);
    message.extend_from_slice(&qtype.to_be_bytes());
    message.extend_from_slice(&1u16.to_be_bytes());
    message
}

/// The question of a query: transaction id, name in lower case, type, and
/// the question's bytes (name, type, class) to echo in the response.
pub struct Question {
    pub transaction_id: u16,
    pub name: String,
    pub qtype: u16,
    pub wire: Vec<u8>,
    pub recursion_desired: bool,
}

/// Parses the first question of a query; `None` when it is malformed.
pub fn parse_question(message: &[u8]) -> Option<Question> {
    if message.len() < 12 {
        return None;
    }
    let mut offset = 12;
    let mut labels = Vec::new();
    loop {
        let length = usize::from(*message.get(offset)?);
        if length == 0 {
            offset += 1;
            break;
        }
        if length & 0xc0 != 0 || labels.len() > 127 {
            return None;
        }
        let label = message.get(offset + 1..offset + 1 + length)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        offset += 1 + length;
    }
    let qtype = u16::from_be_bytes([*message.get(offset)?, *message.get(offset + 1)?]);
    let wire = message.get(12..offset + 4)?.to_vec();
    Some(Question {
        transaction_id: u16::from_be_bytes([message[0], message[1]]),
        name: labels.join("."),
        qtype,
        wire,
        recursion_desired: message[2] & 0x01 != 0,
    })
}

/// Encodes a response to `question` with `rcode` and, for NOERROR to an
/// A or AAAA question, one answer from the documentation ranges (192.0.2.1,
/// 2001:db8::1), which nothing in the tests ever contacts.
pub fn encode_response(question: &Question, rcode: u8) -> Vec<u8> {
    let answer: Option<&[u8]> = match (rcode, question.qtype) {
        (RCODE_NOERROR, TYPE_A) => Some(&[192, 0, 2, 1]),
        (RCODE_NOERROR, TYPE_AAAA) => Some(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        _ => None,
    };
    let mut message = Vec::with_capacity(64);
    message.extend_from_slice(&question.transaction_id.to_be_bytes());
    message.push(0x80 | u8::from(question.recursion_desired));
    message.push(0x80 | rcode);
    message.extend_from_slice(&[0, 1, 0, u8::from(answer.is_some()), 0, 0, 0, 0]);
    message.extend_from_slice(&question.wire);
    if let Some(data) = answer {
        // A pointer to the question's name at offset 12, type, class IN,
        // TTL 0, then the address.
        message.extend_from_slice(&[0xc0, 12]);
        message.extend_from_slice(&question.qtype.to_be_bytes());
        message.extend_from_slice(&[0, 1, 0, 0, 0, 0]);
        message.extend_from_slice(&(data.len() as u16).to_be_bytes());
        message.extend_from_slice(data);
    }
    message
}

/// Transaction id and RCODE of a response; `None` when it is not one.
pub fn parse_response(message: &[u8]) -> Option<(u16, u8)> {
    if message.len() < 12 || message[2] & 0x80 == 0 {
        return None;
    }
    Some((u16::from_be_bytes([message[0], message[1]]), message[3] & 0x0f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trip() {
        let query = encode_query(0x1234, "nx-a.example.test", TYPE_AAAA);

        let question = parse_question(&query).unwrap();
        let response = encode_response(&question, RCODE_NXDOMAIN);

        assert_eq!(question.transaction_id, 0x1234);
        assert_eq!(question.name, "nx-a.example.test");
        assert_eq!(question.qtype, TYPE_AAAA);
        assert_eq!(parse_response(&response), Some((0x1234, RCODE_NXDOMAIN)));
        assert_eq!(parse_response(&query), None);
    }
}
