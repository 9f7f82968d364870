/* test_phone — unit tests for worker/phone: digit extraction, the query forms produced for
 * Brazilian mobiles (both 9th-digit forms), landlines and foreign numbers, the
 * same-line comparison (formatting, +55, trunk prefixes, 9th digit; different area code or
 * country must not match) and the customer-by-direction rule. */
#include <criterion/criterion.h>
#include <string.h>

#include "worker/phone.h"

/* Asserts that `list` holds exactly the `n` strings of `want`, in that order. */
static void expect_variants(const phone_variant_list *list, const char *const *want, size_t n)
{
    cr_assert_eq(list->count, n, "expected %zu variants, got %zu", n, list->count);
    for (size_t i = 0; i < n; i++)
        cr_expect_str_eq(list->v[i], want[i], "variant %zu", i);
}

/* Asserts the list has no duplicates. */
static void expect_unique(const phone_variant_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        for (size_t j = i + 1; j < list->count; j++)
            cr_expect_str_neq(list->v[i], list->v[j], "duplicate %s", list->v[i]);
}

Test(phone_digits, keeps_only_digits)
{
    char out[32];

    cr_assert_eq(phone_digits("+55 (11) 97173-0783", out, sizeof out), 13);
    cr_expect_str_eq(out, "5511971730783");
    cr_assert_eq(phone_digits("abc", out, sizeof out), 0);
    cr_expect_str_eq(out, "");
    cr_assert_eq(phone_digits("", out, sizeof out), 0);
}

Test(phone_digits, refuses_overflow_and_null)
{
    char out[5];

    cr_expect_eq(phone_digits("12345", out, sizeof out), -1);
    cr_expect_str_eq(out, "");
    cr_expect_eq(phone_digits("1-2-3-4", out, sizeof out), 4);
    cr_expect_str_eq(out, "1234");
    cr_expect_eq(phone_digits(NULL, out, sizeof out), -1);
    cr_expect_eq(phone_digits("1", NULL, 4), -1);
    cr_expect_eq(phone_digits("1", out, 0), -1);
}

Test(phone_variants, brazilian_mobile_9_digits)
{
    static const char *const want[] = {"+5511971730783",  "5511971730783", "11971730783",
                                       "(11) 97173-0783", "971730783",     "+551171730783",
                                       "551171730783",    "1171730783",    "(11) 7173-0783",
                                       "71730783",        "011971730783",  "01171730783"};
    phone_variant_list l;

    cr_assert_eq(phone_variants("+5511971730783", &l), 12);
    expect_variants(&l, want, 12);
    expect_unique(&l);
}

Test(phone_variants, old_8_digit_mobile_gets_9th_digit_form)
{
    static const char *const want[] = {"+552181234567",  "552181234567", "2181234567",
                                       "(21) 8123-4567", "81234567",     "+5521981234567",
                                       "5521981234567",  "21981234567",  "(21) 98123-4567",
                                       "981234567",      "02181234567",  "021981234567"};
    phone_variant_list l;

    cr_assert_eq(phone_variants("+552181234567", &l), 12);
    expect_variants(&l, want, 12);
}

Test(phone_variants, landline_has_no_9th_digit_form)
{
    static const char *const want[] = {"+551133334444",  "551133334444", "1133334444",
                                       "(11) 3333-4444", "33334444",     "01133334444"};
    phone_variant_list l;

    cr_assert_eq(phone_variants("+551133334444", &l), 6);
    expect_variants(&l, want, 6);
}

Test(phone_variants, nine_digit_mobile_without_old_form)
{
    /* 9 + 2xxxxxxx: dropping the 9 would give a landline-looking number, a different line. */
    static const char *const want[] = {"+5511923456789",  "5511923456789", "11923456789",
                                       "(11) 92345-6789", "923456789",     "011923456789"};
    phone_variant_list l;

    cr_assert_eq(phone_variants("+5511923456789", &l), 6);
    expect_variants(&l, want, 6);
}

Test(phone_variants, non_brazilian)
{
    static const char *const us[] = {"+14155551212", "14155551212"};
    static const char *const pt[] = {"+351912345678", "351912345678"};
    phone_variant_list l;

    cr_assert_eq(phone_variants("+14155551212", &l), 2);
    expect_variants(&l, us, 2);
    cr_assert_eq(phone_variants("+351912345678", &l), 2);
    expect_variants(&l, pt, 2);
}

Test(phone_variants, brazil_prefix_but_not_a_national_number)
{
    /* +55 followed by a length no Brazilian number has is kept as an opaque number. */
    phone_variant_list l;

    cr_assert_eq(phone_variants("+5511971", &l), 2);
    cr_expect_str_eq(l.v[0], "+5511971");
    cr_expect_str_eq(l.v[1], "5511971");
    /* DDD 10 does not exist (no area code ends in 0). */
    cr_assert_eq(phone_variants("+551071730783", &l), 2);
}

Test(phone_variants, toll_free_is_opaque)
{
    /* 0800 numbers (+55 800 …) have no area code: only the two plain forms. */
    static const char *const want[] = {"+558001234567", "558001234567"};
    phone_variant_list l;

    cr_assert_eq(phone_variants("+558001234567", &l), 2);
    expect_variants(&l, want, 2);
}

Test(phone_variants, rejects_non_e164)
{
    phone_variant_list l;
    const char *bad[] = {"client:alice",      "anonymous", "5511971730783",
                         "+55 11 97173-0783", "+",         "+123456",
                         "+1234567890123456", "",          NULL};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        l.count = 99;
        cr_expect_eq(phone_variants(bad[i], &l), -1, "input %s", bad[i] ? bad[i] : "NULL");
        cr_expect_eq(l.count, 0);
    }
    cr_expect_eq(phone_variants("+5511971730783", NULL), -1);
}

Test(phone_variants, every_variant_matches_back)
{
    const char *nums[] = {"+5511971730783", "+552181234567", "+551133334444", "+14155551212"};
    phone_variant_list l;

    for (size_t n = 0; n < sizeof nums / sizeof nums[0]; n++) {
        cr_assert_gt(phone_variants(nums[n], &l), 0);
        for (size_t i = 0; i < l.count; i++)
            cr_expect_eq(phone_same_number(nums[n], l.v[i]), 1, "%s vs %s", nums[n], l.v[i]);
    }
}

Test(phone_same_number, brazilian_mobile_formats)
{
    const char *t = "+5511971730783";
    const char *same[] = {
        "+5511971730783",     "+55 11 97173-0783",    "5511971730783",  "55 (11) 97173 0783",
        "(11) 97173-0783",    "11 971730783",         "011 97173-0783", "0 15 11 97173-0783",
        "0055 11 97173 0783", "+55 (011) 97173-0783", "971730783",      "97173-0783",
        " +55 11 7173-0783",  "(11) 7173-0783",       "1171730783",     "71730783",
        "551171730783",       "011 7173-0783"};

    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        cr_expect_eq(phone_same_number(t, same[i]), 1, "%s", same[i]);
}

Test(phone_same_number, stored_9_digit_matches_old_twilio_form)
{
    cr_expect_eq(phone_same_number("+551171730783", "(11) 97173-0783"), 1);
    cr_expect_eq(phone_same_number("+551171730783", "+5511971730783"), 1);
}

Test(phone_same_number, different_lines)
{
    const char *t = "+5511971730783";
    const char *other[] = {
        "+5521971730783",  /* different DDD */
        "(21) 97173-0783", /* different DDD, national */
        "21 7173-0783",    /* different DDD, old form */
        "021 97173-0783",  /* different DDD with trunk prefix */
        "+5511971730784",  /* different number */
        "+1 971730783",    /* different country */
        "+3511971730783",  /* shares the national digits, different country */
        "1971730783",      /* 10 digits: DDD 19 */
        "11 3173-0783",    /* landline-looking */
        "",
        "sem telefone",
        "11 97173-0783 / 11 3333-4444", /* two numbers in one field */
    };

    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        cr_expect_eq(phone_same_number(t, other[i]), 0, "%s", other[i]);
    cr_expect_eq(phone_same_number(t, NULL), 0);
}

Test(phone_same_number, landline_does_not_gain_9th_digit)
{
    cr_expect_eq(phone_same_number("+551133334444", "(11) 3333-4444"), 1);
    cr_expect_eq(phone_same_number("+551133334444", "(11) 93333-4444"), 0);
    cr_expect_eq(phone_same_number("+5511933334444", "(11) 3333-4444"), 0);
}

Test(phone_same_number, non_brazilian)
{
    cr_expect_eq(phone_same_number("+14155551212", "+1 (415) 555-1212"), 1);
    cr_expect_eq(phone_same_number("+14155551212", "14155551212"), 1);
    cr_expect_eq(phone_same_number("+14155551212", "001 415 555 1212"), 1);
    cr_expect_eq(phone_same_number("+14155551212", "+14155551213"), 0);
    cr_expect_eq(phone_same_number("+14155551212", "4155551212"), 0);
    cr_expect_eq(phone_same_number("+14155551212", "+5514155551212"), 0);
}

Test(phone_same_number, invalid_twilio_side)
{
    cr_expect_eq(phone_same_number("anonymous", "anonymous"), 0);
    cr_expect_eq(phone_same_number(NULL, "+5511971730783"), 0);
    cr_expect_eq(phone_same_number("5511971730783", "5511971730783"), 0);
}

Test(phone_customer, by_direction)
{
    const char *from = "+5511971730783", *to = "+551133334444";

    cr_expect_eq(phone_customer("inbound", from, to), from);
    cr_expect_eq(phone_customer("outbound-api", from, to), to);
    cr_expect_eq(phone_customer("outbound-dial", from, to), to);
    cr_expect_eq(phone_customer("trunking-terminating", from, to), from);
    cr_expect_eq(phone_customer("trunking-originating", from, to), to);
    cr_expect_null(phone_customer("sideways", from, to));
    cr_expect_null(phone_customer(NULL, from, to));
}

/* 1 when the two key lists share a key. */
static int keys_meet(const phone_key_list *a, const phone_key_list *b)
{
    for (size_t i = 0; i < a->count; i++)
        for (size_t j = 0; j < b->count; j++)
            if (strcmp(a->k[i], b->k[j]) == 0)
                return 1;
    return 0;
}

Test(phone_index_keys, meet_exactly_when_phone_same_number_says_so)
{
    /* every Twilio number against every stored form: the index must agree with the
     * comparison the live look-up confirms contacts with */
    static const char *const twilio[] = {
        "+5511971730783", "+551171730783", "+552181234567", "+5521981234567", "+551133334444",
        "+5511923456789", "+14155551212",  "+558001234567", "+5511971",       "+447911123456"};
    static const char *const stored[] = {"+5511971730783",
                                         "+55 11 97173-0783",
                                         "5511971730783",
                                         "55 (11) 97173 0783",
                                         "(11) 97173-0783",
                                         "11 971730783",
                                         "011 97173-0783",
                                         "0 15 11 97173-0783",
                                         "0055 11 97173 0783",
                                         "+55 (011) 97173-0783",
                                         "971730783",
                                         "97173-0783",
                                         " +55 11 7173-0783",
                                         "(11) 7173-0783",
                                         "1171730783",
                                         "71730783",
                                         "+5521971730783",
                                         "(21) 97173-0783",
                                         "+5511971730784",
                                         "(21) 8123-4567",
                                         "21981234567",
                                         "+55 11 3333-4444",
                                         "33334444",
                                         "933334444",
                                         "(11) 92345-6789",
                                         "+1 415 555 1212",
                                         "14155551212",
                                         "0014155551212",
                                         "+558001234567",
                                         "08001234567",
                                         "+5511971",
                                         "+44 7911 123456",
                                         "",
                                         "abc",
                                         "(11)",
                                         "+55"};
    for (size_t i = 0; i < sizeof twilio / sizeof twilio[0]; i++) {
        phone_key_list lk;
        cr_assert(phone_lookup_keys(twilio[i], &lk) >= 1, "%s has no look-up key", twilio[i]);
        for (size_t j = 0; j < sizeof stored / sizeof stored[0]; j++) {
            phone_key_list ik;
            phone_index_keys(stored[j], &ik);
            cr_expect_eq(keys_meet(&lk, &ik), phone_same_number(twilio[i], stored[j]),
                         "twilio %s vs stored \"%s\": index %d, comparison %d", twilio[i],
                         stored[j], keys_meet(&lk, &ik), phone_same_number(twilio[i], stored[j]));
        }
    }
}

Test(phone_index_keys, are_readable_and_refuse_what_is_not_a_number)
{
    phone_key_list k;
    cr_assert_eq(phone_lookup_keys("+5511971730783", &k), 2);
    cr_expect_str_eq(k.k[0], "b11971730783");
    cr_expect_str_eq(k.k[1], "s971730783");
    cr_assert_eq(phone_index_keys("(11) 7173-0783", &k), 2);
    cr_expect_str_eq(k.k[0], "d1171730783");
    cr_expect_str_eq(k.k[1], "b11971730783");
    cr_expect_eq(phone_lookup_keys("client:alice", &k), -1);
    cr_expect_eq(phone_index_keys("n/a", &k), 0);
    cr_expect_eq(phone_index_keys(NULL, &k), 0);
}
