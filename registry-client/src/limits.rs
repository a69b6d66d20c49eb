//! Bounds both planes hold to, and the one way client input is quoted back.
//!
//! A request id travels from a request to the prediction log, the
//! registry's feedback join and every log line: the gateway refuses a
//! longer one, so nothing downstream keeps more. Error messages quote what
//! a client sent (a name, a value) up to [`MAX_QUOTED_CHARS`], so an answer
//! never grows with its request.

/// Longest request id accepted (`x-request-id`, the body's `id`, a label's
/// `request_id`), in bytes: a UUID is 36, a W3C trace id 32.
pub const MAX_REQUEST_ID_BYTES: usize = 256;

/// Most characters of client input an error message repeats.
pub const MAX_QUOTED_CHARS: usize = 128;

/// Longest error message answered: past it the message is cut, whatever
/// it quotes (a second line of defence behind [`quote`]).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

/// `message` cut to [`MAX_ERROR_MESSAGE_BYTES`], where a character ends.
pub fn bound_message(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_ERROR_MESSAGE_BYTES {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut cut = MAX_ERROR_MESSAGE_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}… (cut at {MAX_ERROR_MESSAGE_BYTES} bytes)",
        &message[..cut]
    ))
}

/// `text` as an error message repeats it: at most [`MAX_QUOTED_CHARS`]
/// characters, then how much was left out.
pub fn quote(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        None => std::borrow::Cow::Borrowed(text),
        Some((cut, _)) => std::borrow::Cow::Owned(format!("{}… ({} bytes in all)", &text[..cut], text.len())),
    }
}

/// Whether `id` is short enough to be a request id (where it came from,
/// for the message: "x-request-id", "id").
pub fn check_request_id(id: &str, field: &str) -> Result<(), String> {
    match id.len() > MAX_REQUEST_ID_BYTES {
        true => Err(format!(
            "{field} is {} bytes long: a request id is at most {MAX_REQUEST_ID_BYTES}",
            id.len()
        )),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_is_cut_where_a_character_ends() {
        assert_eq!(quote("short"), "short");
        let long = "é".repeat(MAX_QUOTED_CHARS + 10);
        let quoted = quote(&long);
        assert!(quoted.starts_with(&"é".repeat(MAX_QUOTED_CHARS)));
        assert!(
            quoted.ends_with(&format!("({} bytes in all)", long.len())),
            "{quoted}"
        );
    }

    #[test]
    fn messages_are_bounded() {
        assert_eq!(bound_message("short"), "short");
        let long = "é".repeat(MAX_ERROR_MESSAGE_BYTES);
        let bounded = bound_message(&long);
        assert!(bounded.len() < MAX_ERROR_MESSAGE_BYTES + 32, "{}", bounded.len());
        assert!(bounded.ends_with("(cut at 4096 bytes)"));
    }

    #[test]
    fn request_ids_are_bounded() {
        assert!(check_request_id("loan-42", "id").is_ok());
        assert!(check_request_id(&"a".repeat(MAX_REQUEST_ID_BYTES), "id").is_ok());
        let refused = check_request_id(&"a".repeat(MAX_REQUEST_ID_BYTES + 1), "x-request-id").unwrap_err();
        assert!(refused.starts_with("x-request-id is 257 bytes"), "{refused}");
    }
}
