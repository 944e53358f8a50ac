//! Guest stdout and stderr, captured into the step's log (for [`Grant::Stdio`]).
//!
//! Both streams write into one [`Capture`] shared with the store's host state,
//! which splits the bytes into lines (stdout lines are `info`, stderr lines
//! `warn`) and hands them over, in order, whenever the guest calls a host
//! import and when the attempt ends. Nothing reaches the host's terminal.
//!
//! [`Grant::Stdio`]: weft_core::Grant::Stdio

use std::sync::{Arc, Mutex, PoisonError};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi_io::bytes::Bytes;
use weft_core::{LogLevel, LogLine};

/// How much a guest may write in one `write` call (WASI `check-write`).
const WRITE_BUDGET: usize = 64 << 10;

/// Lines written by the guest and not yet moved into the step's log.
#[derive(Debug)]
pub(crate) struct Capture {
    lines: Vec<LogLine>,
    /// The unterminated last line of stdout (0) and stderr (1).
    partial: [Vec<u8>; 2],
    max_line_bytes: usize,
    max_lines: usize,
    produced: usize,
    violation: Option<String>,
}

impl Capture {
    /// A capture refusing lines longer than `max_line_bytes` and more than
    /// `max_lines` lines in all.
    pub(crate) fn new(max_line_bytes: usize, max_lines: usize) -> Self {
        Self {
            lines: Vec::new(),
            partial: [Vec::new(), Vec::new()],
            max_line_bytes,
            max_lines,
            produced: 0,
            violation: None,
        }
    }

    /// Appends `bytes` written to stream `index` (0 = stdout, 1 = stderr).
    fn write(&mut self, index: usize, mut bytes: &[u8]) -> Result<(), String> {
        if let Some(violation) = &self.violation {
            return Err(violation.clone());
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.extend(index, &bytes[..end])?;
            self.end_line(index)?;
            bytes = &bytes[end + 1..];
        }
        self.extend(index, bytes)
    }

    fn extend(&mut self, index: usize, bytes: &[u8]) -> Result<(), String> {
        let partial = &mut self.partial[index];
        if partial.len().saturating_add(bytes.len()) > self.max_line_bytes {
            return Err(self.fail(format!(
                "the step wrote a line longer than the limit of {} bytes to {}",
                self.max_line_bytes,
                stream_name(index)
            )));
        }
        partial.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, index: usize) -> Result<(), String> {
        let mut bytes = std::mem::take(&mut self.partial[index]);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        self.produced += 1;
        if self.produced > self.max_lines {
            return Err(self.fail(format!(
                "the step wrote more than {} lines to stdout and stderr",
                self.max_lines
            )));
        }
        let level = if index == 0 {
            LogLevel::Info
        } else {
            LogLevel::Warn
        };
        let message = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        self.lines.push(LogLine { level, message });
        Ok(())
    }

    fn fail(&mut self, message: String) -> String {
        self.violation.get_or_insert(message).clone()
    }

    /// Takes the complete lines written so far; with `all`, the unterminated
    /// last lines too (at the end of the attempt).
    pub(crate) fn take_lines(&mut self, all: bool) -> Vec<LogLine> {
        if all {
            for index in 0..2 {
                if !self.partial[index].is_empty() {
                    // Over the line count, the violation is kept and reported.
                    let _ = self.end_line(index);
                }
            }
        }
        std::mem::take(&mut self.lines)
    }

    /// The limit the guest broke through stdio, if any.
    pub(crate) fn violation(&self) -> Option<&str> {
        self.violation.as_deref()
    }
}

fn stream_name(index: usize) -> &'static str {
    if index == 0 { "stdout" } else { "stderr" }
}

/// One of the guest's output streams (stdout or stderr) writing into a [`Capture`].
#[derive(Debug, Clone)]
pub(crate) struct CapturePipe {
    index: usize,
    capture: Arc<Mutex<Capture>>,
}

impl CapturePipe {
    pub(crate) fn stdout(capture: Arc<Mutex<Capture>>) -> Self {
        Self { index: 0, capture }
    }

    pub(crate) fn stderr(capture: Arc<Mutex<Capture>>) -> Self {
        Self { index: 1, capture }
    }
}

impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut capture = self.capture.lock().unwrap_or_else(PoisonError::into_inner);
        capture
            .write(self.index, &bytes)
            .map_err(|message| StreamError::trap(&message))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    /// Only WASI 0.3 uses the async stream, and the sandbox does not link
    /// WASI 0.3: a sink is enough.
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        StdoutStream::async_stream(&std::io::empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_in_order() {
        let mut c = Capture::new(100, 10);
        c.write(0, b"hello\r\nwor").unwrap();
        c.write(1, b"oops\n").unwrap();
        c.write(0, b"ld\nlast").unwrap();
        let lines = c.take_lines(false);
        let text: Vec<_> = lines
            .iter()
            .map(|l| (l.level, l.message.as_str()))
            .collect();
        assert_eq!(
            text,
            [
                (LogLevel::Info, "hello"),
                (LogLevel::Warn, "oops"),
                (LogLevel::Info, "world")
            ]
        );
        assert_eq!(c.take_lines(true)[0].message, "last");
    }

    #[test]
    fn enforces_limits() {
        let mut c = Capture::new(4, 10);
        assert!(c.write(0, b"12345").is_err());
        assert!(c.violation().is_some());
        let mut c = Capture::new(100, 2);
        assert!(c.write(1, b"a\nb\nc\n").is_err());
    }
}
