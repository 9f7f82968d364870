/* test_buffer — common/buffer, the one bounded growable buffer: appends of bytes and
 * strings, printf growth past the first allocation, the maximum (exactly reachable, never
 * passed), the sticky error (later appends are no-ops, reset keeps it, take returns NULL),
 * the empty buffer (take still hands out ""), reserve/commit for read(2)-style producers,
 * and reuse after buffer_free. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/buffer.h"

/* Under AddressSanitizer an impossible allocation must fail like malloc does (NULL), not
 * abort the test: the out-of-memory case below relies on it. Unused without ASan. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

Test(buffer, an_empty_buffer_takes_as_the_empty_string)
{
    buffer b;
    buffer_init(&b, 16);
    cr_expect_null(buffer_ptr(&b), "nothing allocated before the first byte");
    cr_expect_eq(buffer_len(&b), 0);
    cr_expect_eq(buffer_add(&b, NULL, 0), CALLLOG_OK);
    cr_expect_eq(buffer_add_str(&b, ""), CALLLOG_OK);
    char *s = buffer_take(&b);
    cr_assert_not_null(s);
    cr_expect_str_eq(s, "");
    free(s);
    cr_expect_eq(buffer_error(&b), CALLLOG_OK);
    buffer_free(&b);
}

Test(buffer, appends_bytes_strings_and_formats)
{
    buffer b;
    buffer_init(&b, 1024);
    cr_assert_eq(buffer_add(&b, "ab\0cd", 5), CALLLOG_OK);
    cr_expect_eq(buffer_len(&b), 5);
    cr_expect_eq(memcmp(buffer_ptr(&b), "ab\0cd", 6), 0, "bytes kept, NUL-terminated");
    buffer_reset(&b);
    cr_expect_eq(buffer_len(&b), 0);
    cr_expect_str_eq(buffer_ptr(&b), "");
    cr_assert_eq(buffer_add_str(&b, "x="), CALLLOG_OK);
    cr_assert_eq(buffer_printf(&b, "%d %s", 42, "y"), CALLLOG_OK);
    cr_expect_str_eq(buffer_ptr(&b), "x=42 y");
    cr_expect_eq(buffer_len(&b), 6);
    char *s = buffer_take(&b);
    cr_assert_not_null(s);
    cr_expect_str_eq(s, "x=42 y");
    free(s);
    cr_expect_eq(buffer_len(&b), 0, "take leaves the buffer empty");
    buffer_free(&b);
}

Test(buffer, printf_grows_past_the_first_allocation)
{
    buffer b;
    char big[5000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    buffer_init(&b, 1 << 20);
    cr_assert_eq(buffer_add_str(&b, "<"), CALLLOG_OK);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(buffer_printf(&b, "%s|%d", big, i), CALLLOG_OK);
    cr_expect_eq(buffer_len(&b), 1 + 3 * (sizeof big - 1 + 2));
    cr_expect_eq(buffer_ptr(&b)[0], '<');
    cr_expect_eq(strncmp(buffer_ptr(&b) + 1 + sizeof big - 1, "|0", 2), 0);
    cr_expect_eq(strcmp(buffer_ptr(&b) + buffer_len(&b) - 2, "|2"), 0);
    buffer_free(&b);
}

Test(buffer, the_maximum_is_reachable_and_never_passed)
{
    buffer b;
    buffer_init(&b, 10);
    cr_assert_eq(buffer_add_str(&b, "0123456789"), CALLLOG_OK, "exactly the maximum fits");
    cr_expect_eq(buffer_len(&b), 10);
    cr_expect_eq(buffer_add(&b, "x", 1), CALLLOG_INVALID, "one byte more is too large");
    cr_expect_eq(buffer_len(&b), 10);
    cr_expect_str_eq(buffer_ptr(&b), "0123456789");
    buffer_free(&b);

    buffer_init(&b, 8);
    cr_expect_eq(buffer_printf(&b, "%s", "123456789"), CALLLOG_INVALID, "printf is capped too");
    cr_expect_eq(buffer_len(&b), 0);
    buffer_free(&b);
}

Test(buffer, errors_are_sticky_until_freed)
{
    buffer b;
    buffer_init(&b, 4);
    cr_assert_eq(buffer_add_str(&b, "ab"), CALLLOG_OK);
    cr_expect_eq(buffer_add_str(&b, "cde"), CALLLOG_INVALID);
    cr_expect_eq(buffer_add_str(&b, "c"), CALLLOG_INVALID, "a later append that would fit");
    cr_expect_eq(buffer_printf(&b, "%c", 'c'), CALLLOG_INVALID);
    cr_expect_null(buffer_reserve(&b, 1));
    cr_expect_str_eq(buffer_ptr(&b), "ab", "no later append landed");
    buffer_reset(&b);
    cr_expect_eq(buffer_error(&b), CALLLOG_INVALID, "reset keeps the error");
    cr_expect_eq(buffer_add_str(&b, "x"), CALLLOG_INVALID);
    cr_expect_null(buffer_take(&b), "take reports the failure");
    cr_expect_eq(buffer_error(&b), CALLLOG_INVALID);
    buffer_free(&b);
    cr_expect_eq(buffer_error(&b), CALLLOG_OK, "free starts over, same maximum");
    cr_assert_eq(buffer_add_str(&b, "abcd"), CALLLOG_OK);
    cr_expect_eq(buffer_add_str(&b, "e"), CALLLOG_INVALID);
    buffer_free(&b);
}

Test(buffer, out_of_memory_is_sticky_nomem)
{
    buffer b;
    buffer_init(&b, (size_t)-1);
    /* More than any allocator gives: realloc fails, the buffer says CALLLOG_NOMEM. */
    cr_expect_null(buffer_reserve(&b, (size_t)-1 / 2));
    cr_expect_eq(buffer_error(&b), CALLLOG_NOMEM);
    cr_expect_eq(buffer_add_str(&b, "a"), CALLLOG_NOMEM);
    cr_expect_null(buffer_take(&b));
    buffer_free(&b);
}

Test(buffer, reserve_and_commit_for_readers)
{
    buffer b;
    buffer_init(&b, 100);
    char *room = buffer_reserve(&b, 5);
    cr_assert_not_null(room);
    memcpy(room, "hello", 5);
    buffer_commit(&b, 5);
    room = buffer_reserve(&b, 10);
    cr_assert_not_null(room);
    memcpy(room, " you", 4);
    buffer_commit(&b, 4); /* fewer than reserved: a short read */
    cr_expect_eq(buffer_len(&b), 9);
    cr_expect_str_eq(buffer_ptr(&b), "hello you");
    cr_expect_null(buffer_reserve(&b, 92), "reserving past the maximum fails");
    cr_expect_eq(buffer_error(&b), CALLLOG_INVALID);
    buffer_free(&b);
}
