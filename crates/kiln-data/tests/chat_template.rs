//! Chat templates render with transformers' Jinja settings (trim/lstrip blocks, Python string
//! methods, `raise_exception`), and bad templates are errors, not panics.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_data::{ChatMessage, ChatTemplate};

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage { role: role.into(), content: content.into() }
}

#[test]
fn chatml_with_block_trimming_and_python_methods() {
    // A LLaMA-2-style template: blocks on their own lines (trimmed), .strip(), bos/eos, an
    // exception for a bad role order.
    let src = "{{ bos_token }}\n{% for m in messages %}\n{% if m['role'] == 'user' %}\n[INST] {{ m['content'].strip() }} [/INST]\n{% elif m['role'] == 'assistant' %}\n {{ m['content'] }}{{ eos_token }}\n{% else %}\n{{ raise_exception('unknown role ' + m['role']) }}\n{% endif %}\n{% endfor %}";
    let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
    let out = t.render(&[msg("user", "  hi  "), msg("assistant", "hello"), msg("user", "bye")], false).unwrap();
    // what Python's jinja2 renders with trim_blocks + lstrip_blocks
    assert_eq!(out, "<s>\n[INST] hi [/INST]\n hello</s>\n[INST] bye [/INST]\n");
    let e = t.render(&[msg("robot", "x")], false).unwrap_err().to_string();
    assert!(e.contains("unknown role robot"), "{e}");
}

#[test]
fn generation_prompt_and_compile_errors() {
    let src = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    assert_eq!(
        t.render(&[msg("user", "2+2?")], true).unwrap(),
        "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(t.render(&[], false).unwrap(), "");
    assert!(ChatTemplate::new("{% for %}", "", "").is_err());
}
